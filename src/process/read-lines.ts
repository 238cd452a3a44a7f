import { constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import { PtError, errnoOf } from '../errors.js';

export interface ReadLinesLimits {
  /** Bytes over all files together: reading stops, with PT_ERR_IMPORT_TOO_LARGE, past this. */
  maxBytes: number;
  /** A longer line is refused before it is buffered whole. */
  maxLineBytes: number;
}

/** Streams the lines of files (`-` is stdin) to a callback, with line numbers. */
export type ReadLines = (
  files: string[],
  limits: ReadLinesLimits,
  onLine: (text: string, file: string, line: number) => void,
) => Promise<{ bytes: number }>;

const CHUNK = 64 * 1024;

/**
 * Reads in 64 KiB chunks, so a 1 GB input costs one chunk and one line of memory before the
 * size limit stops it. FIFOs and stdin pipes are fine (`lspci ... | passthru import -`);
 * directories and devices are refused.
 */
export const readLines: ReadLines = async (files, limits, onLine) => {
  let total = 0;
  for (const file of files) {
    const stdin = file === '-';
    const name = stdin ? '<stdin>' : file;
    let fh: fs.FileHandle | null = null;
    try {
      if (!stdin) {
        try {
          fh = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NOCTTY);
        } catch (e) {
          throw new PtError(
            'PT_ERR_INVALID_ARGUMENT',
            `cannot read ${file}: ${errnoOf(e) ?? String(e)}`,
          );
        }
        const st = await fh.stat();
        if (st.isDirectory() || st.isCharacterDevice() || st.isBlockDevice() || st.isSocket())
          throw new PtError('PT_ERR_INVALID_ARGUMENT', `${file} is not a file of lspci output`);
      }
      const buf = Buffer.alloc(CHUNK);
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      let lineNo = 0;
      const decoder = new TextDecoder('utf-8', { fatal: false });
      const emit = (bytes: Buffer): void => {
        lineNo++;
        onLine(decoder.decode(bytes), name, lineNo);
      };
      for (;;) {
        const n = stdin
          ? await readStdin(buf)
          : (await (fh as fs.FileHandle).read(buf, 0, CHUNK, null)).bytesRead;
        if (n === 0) break;
        total += n;
        if (total > limits.maxBytes)
          throw new PtError(
            'PT_ERR_IMPORT_TOO_LARGE',
            `input over ${limits.maxBytes} bytes at ${name} line ${lineNo + 1}: not the lspci output of one server`,
            { details: { file: name, limit: limits.maxBytes } },
          );
        let start = 0;
        for (let i = buf.indexOf(0x0a, 0); i >= 0 && i < n; i = buf.indexOf(0x0a, i + 1)) {
          const part = buf.subarray(start, i);
          if (pendingBytes + part.length > limits.maxLineBytes) tooLong(name, lineNo + 1, limits);
          emit(pendingBytes > 0 ? Buffer.concat([...pending, part]) : Buffer.from(part));
          pending = [];
          pendingBytes = 0;
          start = i + 1;
        }
        if (start < n) {
          pendingBytes += n - start;
          if (pendingBytes > limits.maxLineBytes) tooLong(name, lineNo + 1, limits);
          pending.push(Buffer.from(buf.subarray(start, n)));
        }
      }
      if (pendingBytes > 0) emit(Buffer.concat(pending));
    } catch (e) {
      if (e instanceof PtError) throw e;
      throw new PtError(
        'PT_ERR_INVALID_ARGUMENT',
        `cannot read ${name}: ${errnoOf(e) ?? String(e)}`,
      );
    } finally {
      await fh?.close();
    }
  }
  return { bytes: total };
};

function tooLong(file: string, line: number, limits: ReadLinesLimits): never {
  throw new PtError(
    'PT_ERR_IMPORT_INVALID',
    `${file}:${line}: line longer than ${limits.maxLineBytes} bytes: not lspci output`,
    { details: { file, line } },
  );
}

let stdinReader: AsyncIterator<Buffer> | null = null;
let stdinRest: Buffer | null = null;

async function readStdin(buf: Buffer): Promise<number> {
  stdinReader ??= (process.stdin as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let chunk = stdinRest;
  stdinRest = null;
  if (chunk === null) {
    const r = await stdinReader.next();
    if (r.done === true) return 0;
    chunk = r.value;
  }
  const n = Math.min(chunk.length, buf.length);
  chunk.copy(buf, 0, 0, n);
  if (n < chunk.length) stdinRest = chunk.subarray(n);
  return n;
}
