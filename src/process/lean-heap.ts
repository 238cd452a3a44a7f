import * as v8 from 'node:v8';
import * as vm from 'node:vm';

/**
 * Keeps a long-running agent's V8 heap near its live size (issue 11: RSS at rest under 80 MB).
 *
 * Measured on a 4096-function tree (bench/agent-rest.ts, Node 20): the live heap at rest is
 * about 20 MiB, but V8 held 20-32 MiB of young generation (it grows each semi-space towards
 * 16 MiB while a full discovery allocates) plus 5-15 MiB of old-space pages that the garbage of
 * the last discovery had filled, and gave neither back while the agent idled.
 *
 * - `--semi-space-growth-factor=1` keeps the young generation at its initial 1 MiB semi-spaces.
 *   `--max-semi-space-size` set at run time has no effect (V8 sizes the heap when the isolate
 *   is made; measured: still 32 MiB); the growth factor is read each time V8 would grow the
 *   space, so it does. Set before the agent's first discovery.
 * - One full collection after each burst of garbage (a full discovery, every resync) returns
 *   the old-space pages that garbage was promoted into: V8 unmaps emptied pages after a full
 *   mark-compact, while at rest it collects rarely, if ever, on its own. About 20-40 ms of one
 *   core per resync (30 s by default). `gc` comes from a context made while `--expose-gc` is
 *   on, then the flag goes off again so no later context sees it.
 * - `--optimize-for-size` makes those collections (and V8's own) shrink the heap towards what
 *   is live: measured on the same tree after two resyncs, 80 MiB RSS with it, 85-87 without.
 *
 * Node's documentation warns that flags changed after start may behave unpredictably: these
 * three were checked on Node 20 by measurement, and lean-heap.test.ts fails on a Node where the
 * young generation or the collection stop behaving so.
 *
 * Process-wide by nature (V8 flags are), so a module-level switch: only `passthru agent`
 * (serveAgent) turns it on; one-shot commands and tests run with Node's defaults.
 */
let collect: (() => void) | null = null;
let scheduled = false;

export function enableLeanHeap(): void {
  if (collect !== null) return;
  v8.setFlagsFromString('--semi-space-growth-factor=1');
  v8.setFlagsFromString('--optimize-for-size');
  v8.setFlagsFromString('--expose-gc');
  const gc: unknown = vm.runInNewContext('typeof gc === "function" ? gc : undefined');
  v8.setFlagsFromString('--no-expose-gc');
  if (typeof gc !== 'function') return;
  collect = () => {
    (gc as () => void)();
  };
}

/**
 * A burst of garbage just ended (a full discovery): collect once the current pass has let go
 * of it. Deferred to the next turn of the event loop so the pass does not wait for it, and
 * coalesced: several bursts in one turn cost one collection.
 */
export function afterGarbageBurst(): void {
  if (collect === null || scheduled) return;
  scheduled = true;
  setImmediate(() => {
    scheduled = false;
    collect?.();
  }).unref();
}
