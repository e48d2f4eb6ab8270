/** A one-line progress bar on stderr (redrawn in place when stderr is a terminal). */
export class Progress {
  #done = 0;
  constructor(readonly total: number, readonly label: string) {
    this.#draw();
  }

  tick(what = ''): void {
    this.#done = Math.min(this.total, this.#done + 1);
    this.#draw(what);
  }

  finish(): void {
    if (process.stderr.isTTY) process.stderr.write('\n');
  }

  #draw(what = ''): void {
    const width = 30;
    const filled = Math.round((this.#done / this.total) * width);
    const line = `${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${this.#done}/${this.total} ${what}`;
    if (process.stderr.isTTY) process.stderr.write(`\r${line.padEnd(100)}`);
    else if (this.#done === this.total || this.#done === 0) process.stderr.write(`${line}\n`);
  }
}
