import type { DomainEvent, Listener } from '../events/events.js';
import type { PciAddress } from '../pci/address.js';
import type { Logger } from '../util/logger.js';

/** Where `boot-config` puts the rules; the agent keeps the file in step while it exists. */
export const UDEV_RULES_PATH = '/etc/udev/rules.d/70-passthru.rules';

/**
 * One rule per claimed address, as driverctl writes them: when the device appears (at boot,
 * or a rescan after `remove`), udev sets driver_override before any driver probes it, so the
 * host driver never gets the device; vfio-pci takes it when it loads. The address is a parsed
 * PciAddress (hex digits, `:` and `.` only), so it is safe inside the quotes.
 */
export function renderUdevRules(addresses: readonly PciAddress[]): string {
  const lines = [...new Set(addresses)]
    .sort()
    .map(
      (a) => `ACTION=="add", SUBSYSTEM=="pci", KERNEL=="${a}", ATTR{driver_override}="vfio-pci"`,
    );
  return `# Written by passthru (boot-config, kept in step by the agent): claimed devices stay off\n# their host drivers from the moment they appear. Do not edit: the agent rewrites it.\n${lines.join('\n')}${lines.length > 0 ? '\n' : ''}`;
}

export interface UdevRulesSyncDeps {
  /** The rules file (UDEV_RULES_PATH under the host root). */
  file: string;
  /** Every address that must stay on vfio-pci: the claims and the group companions they bind. */
  claimed: () => readonly PciAddress[];
  /** Atomic replace (write a temp file, fsync, rename), e.g. writeFileAtomic. */
  write: (file: string, content: string) => Promise<void>;
  logger: Logger;
}

export interface UdevRulesSync {
  /** Subscribe this to the agent's EventBus. */
  listener: Listener;
  /** Rewrite now if the claims differ from the file (at start: claims may have changed since). */
  sync: () => void;
  /** Resolves when no rewrite is pending (tests; a clean stop). */
  settled: () => Promise<void>;
}

/**
 * Keeps the udev rules in step with the claims: each claim.added or claim.removed schedules a
 * rewrite from `claimed()`. Rewrites are serialised and coalesced (a burst of claims is one
 * write of the final list); a failure is logged once per failure streak and retried with the
 * next change. Attach it only when boot-config was enabled (the rules file exists).
 */
export function udevRulesSubscriber(deps: UdevRulesSyncDeps): UdevRulesSync {
  const log = deps.logger.child({ component: 'udev-rules' });
  let running: Promise<void> = Promise.resolve();
  let dirty = false;
  let writing = false;
  let failing = false;
  let last: string | null = null;

  const rewrite = async (): Promise<void> => {
    writing = true;
    try {
      while (dirty) {
        dirty = false;
        const content = renderUdevRules(deps.claimed());
        if (content === last) continue;
        try {
          await deps.write(deps.file, content);
          last = content;
          if (failing) log.warn({ file: deps.file }, 'udev rules written again');
          failing = false;
        } catch (e) {
          if (!failing)
            log.error(
              { file: deps.file, err: e instanceof Error ? e.message : String(e) },
              'cannot write udev rules: claimed devices may go to their host drivers at the next boot',
            );
          failing = true;
        }
      }
    } finally {
      writing = false;
    }
  };

  const sync = (): void => {
    dirty = true;
    if (!writing) running = rewrite();
  };
  // claim.state too: a --with-group claim's companions are known once its device is seen.
  const listener = (e: DomainEvent): void => {
    if (e.type === 'claim.added' || e.type === 'claim.removed' || e.type === 'claim.state') sync();
  };
  return {
    listener,
    sync,
    settled: async () => {
      while (writing || dirty) await running;
    },
  };
}
