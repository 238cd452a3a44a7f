import * as fs from 'node:fs';
import * as path from 'node:path';
import { KUBELET_SOCKET } from '../deviceplugin/proto.js';

/**
 * The kubelet's device-plugin folder: the only file-system access the plugins need. The real
 * adapter is below; tests may wrap it (e.g. to take the watch away and exercise the poll).
 */
export interface PluginDirPort {
  readonly dir: string;
  socketPath(name: string): string;
  /**
   * Identity of kubelet.sock (device, inode and birth time), or null when it is absent. A new
   * kubelet re-creates the socket, so a different identity means a kubelet restart.
   */
  kubeletIdentity(): string | null;
  socketExists(name: string): boolean;
  /** grpc-js does not unlink, and listen() on an existing path fails with EADDRINUSE. */
  removeSocket(name: string): void;
  /**
   * Calls `onChange` for every change in the folder; null when no watch is possible (then the
   * poll alone detects restarts). Returns a stop function.
   */
  watch(onChange: () => void): (() => void) | null;
}

export class FsPluginDir implements PluginDirPort {
  constructor(readonly dir: string) {}

  socketPath(name: string): string {
    return path.join(this.dir, name);
  }

  kubeletIdentity(): string | null {
    try {
      const st = fs.statSync(this.socketPath(KUBELET_SOCKET));
      if (!st.isSocket()) return null;
      // Inode numbers are reused at once on tmpfs and ext4: the birth (or change) time tells a
      // re-created socket from the old one.
      return `${st.dev}:${st.ino}:${st.birthtimeMs || st.ctimeMs}`;
    } catch {
      return null;
    }
  }

  socketExists(name: string): boolean {
    try {
      return fs.statSync(this.socketPath(name)).isSocket();
    } catch {
      return false;
    }
  }

  removeSocket(name: string): void {
    fs.rmSync(this.socketPath(name), { force: true });
  }

  watch(onChange: () => void): (() => void) | null {
    let watcher: fs.FSWatcher | null = null;
    let stopped = false;
    let retry: NodeJS.Timeout | null = null;
    const arm = (): void => {
      if (stopped) return;
      try {
        // fs.watch reports creation and removal both as 'rename': the caller stats afterwards.
        watcher = fs.watch(this.dir, { persistent: false }, () => {
          onChange();
        });
        watcher.on('error', () => {
          watcher?.close();
          watcher = null;
          // Re-arm: the folder may have been re-created; the poll covers the gap.
          retry = setTimeout(arm, 1_000);
          retry.unref();
          onChange();
        });
      } catch {
        retry = setTimeout(arm, 1_000);
        retry.unref();
      }
    };
    arm();
    return () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      watcher?.close();
    };
  }
}
