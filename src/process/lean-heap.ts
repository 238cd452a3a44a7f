import * as v8 from 'node:v8';
import * as vm from 'node:vm';

/**
 * Keeps a long-running agent's V8 heap near its live size (issue 11: RSS at rest under 80 MB).
 * Why and the measurements: docs/adr/0008-agent-memory-at-rest.md.
 *
 * - `--semi-space-growth-factor=1` keeps the young generation at its initial 1 MiB semi-spaces
 *   (V8 grows them towards 16 MiB while a full discovery allocates, and keeps them).
 *   `--max-semi-space-size` set at run time has no effect (V8 sizes the heap when the isolate
 *   is made; measured: still 32 MiB); the growth factor is read each time V8 would grow.
 * - After each burst of garbage (a full discovery: start, a device added or removed, a release of
 *   pci.ids; a resync is not one since docs/adr/0010) two full collections in
 *   memory-reducing mode (`--optimize-for-size` on for just those): the first frees the
 *   garbage, the second, a second later once the sweeper has released the freed pages,
 *   compacts what is left. At rest V8 collects rarely, if ever, on its own, so without them
 *   the pages the garbage filled stay in the RSS. `--optimize-for-size` left on for good does
 *   as well for memory but cost ~0.3% of a core at rest (measured), hence only around these.
 *   `gc` comes from a context made while `--expose-gc` is on; then the flag goes off again, so
 *   no later context sees it.
 *
 * Node's documentation warns that flags changed after start may behave unpredictably: these
 * were checked on Node 20 by measurement, and lean-heap.test.ts fails on a Node where the
 * young generation or the collections stop behaving so.
 *
 * Process-wide by nature (V8 flags are), so a module-level switch: only `passthru agent`
 * (serveAgent) turns it on; one-shot commands and tests run with Node's defaults.
 */
let collect: (() => void) | null = null;
let scheduled = false;

/** The second collection's delay: the first one's pages are swept and released by then. */
const SETTLE_MS = 1000;

export function enableLeanHeap(): void {
  if (collect !== null) return;
  v8.setFlagsFromString('--semi-space-growth-factor=1');
  v8.setFlagsFromString('--expose-gc');
  const gc: unknown = vm.runInNewContext('typeof gc === "function" ? gc : undefined');
  v8.setFlagsFromString('--no-expose-gc');
  if (typeof gc !== 'function') return;
  collect = () => {
    v8.setFlagsFromString('--optimize-for-size');
    try {
      (gc as () => void)();
    } finally {
      v8.setFlagsFromString('--no-optimize-for-size');
    }
  };
}

/**
 * A burst of garbage just ended (a full discovery): collect once the current pass has let go
 * of it, on the next turn of the event loop so the pass does not wait, then again SETTLE_MS
 * later. Coalesced: bursts before the second collection cost no more collections.
 */
export function afterGarbageBurst(): void {
  if (collect === null || scheduled) return;
  scheduled = true;
  setImmediate(() => {
    collect?.();
    setTimeout(() => {
      scheduled = false;
      collect?.();
    }, SETTLE_MS).unref();
  }).unref();
}
