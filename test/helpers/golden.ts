import * as fs from 'fs';
import * as path from 'path';
import { loadSafetensors, Safetensors } from '../../lib';

export const GOLDEN_DIR = path.join(__dirname, '..', 'fixtures', 'golden');

/** Names of the golden files (every *.safetensors in test/fixtures/golden). */
export function goldenFiles(): string[] {
  return fs.readdirSync(GOLDEN_DIR).filter((f) => f.endsWith('.safetensors')).sort();
}

export function loadGolden(file: string): Safetensors {
  return loadSafetensors(path.join(GOLDEN_DIR, file.endsWith('.safetensors') ? file : `${file}.safetensors`));
}

/** ‖got − want‖ / ‖want‖ (with ‖want‖ = 0 → ‖got‖). */
export function relativeError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) throw new Error(`length ${got.length} vs ${want.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < got.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}
