import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/**
 * Write-then-rename with fsync of the file and its directory: a reader sees the old bytes or
 * the new ones, never half.
 *
 * - The temporary file is created with O_EXCL|O_NOFOLLOW under an unguessable name, so nothing
 *   planted in the folder (a symlink, a file of the same name) is followed or reused.
 * - A failed write removes its temporary file: no `.tmp` outlives a failed save.
 * - Missing parent folders are created only when the caller says with which mode: a state
 *   folder is private (0700), /etc/modprobe.d is not; without `parentMode` they must exist.
 */
export async function writeFileAtomic(
  file: string,
  data: string,
  mode = 0o600,
  parentMode?: number,
): Promise<void> {
  const dir = path.dirname(file);
  if (parentMode !== undefined) await fs.mkdir(dir, { recursive: true, mode: parentMode });
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  const fh = await fs.open(tmp, flags, mode);
  let renamed = false;
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, file);
    renamed = true;
  } finally {
    if (!renamed) await fs.rm(tmp, { force: true });
  }
  const dh = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}
