import { MoekitError } from '../../lib';

/** A misuse case: its name, the call, the error class it must throw and a pattern of its message. */
export type ErrorCase = [string, () => unknown, new (...args: never[]) => Error, RegExp];

/** Runs `call` and checks it throws `errorClass` (a MoekitError) whose message matches `message`. */
export function expectTypedError(call: () => unknown, errorClass: new (...args: never[]) => Error, message: RegExp): void {
  let thrown: unknown;
  try {
    call();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(errorClass);
  expect(thrown).toBeInstanceOf(MoekitError);
  expect((thrown as Error).name).toBe(errorClass.name);
  expect((thrown as Error).message).toMatch(message);
}
