import type { Uevent } from './port.js';

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
