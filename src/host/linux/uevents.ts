import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Clock } from '../clock.js';
import type { Uevent } from '../port.js';

/**
 * Parses `udevadm monitor --kernel --property` output: a header line
 * "KERNEL[123.4] remove   /module/vfio_pci (module)" then KEY=value lines, blank-line separated.
 */
export function parseUeventStream(onEvent: (e: Uevent) => void): (chunk: string) => void {
  let buf = '';
  let props: Record<string, string> | null = null;
  const flush = (): void => {
    if (props?.ACTION !== undefined && props.DEVPATH !== undefined) {
      const e: Uevent = { action: props.ACTION, devpath: props.DEVPATH, props };
      if (props.SUBSYSTEM !== undefined) e.subsystem = props.SUBSYSTEM;
      if (props.DRIVER !== undefined) e.driver = props.DRIVER;
      onEvent(e);
    }
    props = null;
  };
  return (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trimEnd();
      buf = buf.slice(nl + 1);
      if (line === '') {
        flush();
      } else if (line.startsWith('KERNEL[')) {
        flush();
        props = {};
      } else if (props !== null) {
        const eq = line.indexOf('=');
        if (eq > 0) props[line.slice(0, eq)] = line.slice(eq + 1);
      }
    }
  };
}

export interface UeventMonitorOptions {
  udevadmPath: string;
  clock: Clock;
  /** First restart delay after udevadm exits on its own; doubles up to 30 s. */
  restartMs?: number;
  /** How the monitor process is started (tests inject a fake udevadm). */
  spawnMonitor?: (udevadmPath: string) => ChildProcessWithoutNullStreams | ChildProcess;
}

const MAX_RESTART_MS = 30_000;

/**
 * `udevadm monitor --kernel --property` as a uevent source. When udevadm exits on its own (it
 * was killed, or udev was restarted), the failure is reported once through onError and the
 * monitor is restarted with backoff; events missed in between are covered by the callers'
 * polling. A stop asked for by the caller reports nothing, whatever udevadm's exit status
 * (it exits 0 on SIGTERM).
 */
export function monitorUevents(
  opts: UeventMonitorOptions,
  onEvent: (e: Uevent) => void,
  onError: (e: Error) => void,
): () => void {
  const start =
    opts.spawnMonitor ??
    ((p: string) =>
      spawn(p, ['monitor', '--kernel', '--property'], { stdio: ['ignore', 'pipe', 'ignore'] }));
  const base = opts.restartMs ?? 1000;
  let delay = base;
  let stopped = false;
  let child: ChildProcess | null = null;
  const abort = new AbortController();
  const run = (): void => {
    if (stopped) return;
    const c = start(opts.udevadmPath);
    child = c;
    const parser = parseUeventStream((e) => {
      delay = base; // it works again: the next failure starts the backoff afresh
      onEvent(e);
    });
    c.stdout?.setEncoding('utf8');
    c.stdout?.on('data', (chunk: string) => {
      parser(chunk);
    });
    let reported = false;
    const failed = (why: string): void => {
      if (stopped || reported) return;
      reported = true;
      child = null;
      onError(new Error(`uevent source failed: ${why}; restarting in ${delay} ms`));
      const wait = delay;
      delay = Math.min(delay * 2, MAX_RESTART_MS);
      opts.clock.sleep(wait, abort.signal).then(run, () => undefined);
    };
    c.on('error', (e) => {
      failed(e.message);
    });
    c.on('exit', (code, signal) => {
      failed(`udevadm monitor exited (${code ?? signal ?? '?'})`);
    });
  };
  run();
  return () => {
    stopped = true;
    abort.abort();
    child?.kill('SIGTERM');
  };
}
