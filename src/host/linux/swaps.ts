import { unescapeOctal } from './mountinfo.js';

export interface SwapArea {
  /** The swap device or file, unescaped; a deleted file ends in " (deleted)". */
  file: string;
  /** partition or file. */
  type: string;
}

/** /proc/swaps: a header line, then "Filename Type Size Used Priority" per area. */
export function parseSwaps(text: string): { swaps: SwapArea[]; bad: string[] } {
  const swaps: SwapArea[] = [];
  const bad: string[] = [];
  const lines = text.split('\n');
  for (const line of lines.slice(lines[0]?.startsWith('Filename') === true ? 1 : 0)) {
    if (line.trim() === '') continue;
    const f = line.trim().split(/[ \t]+/);
    if (f.length < 5 || f[0] === undefined || f[1] === undefined) {
      bad.push(line);
      continue;
    }
    swaps.push({ file: unescapeOctal(f[0]), type: f[1] });
  }
  return { swaps, bad };
}
