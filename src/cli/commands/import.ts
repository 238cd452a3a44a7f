import type { Command } from 'commander';
import { PtError } from '../../errors.js';
import type { ImportResult } from '../../import/to-topology.js';
import type { CommandContext } from '../program.js';

/** A big server's three dumps are a few MB; 64 MiB leaves room and bounds a hostile input. */
export const MAX_IMPORT_BYTES = 64 * 1024 * 1024;

const NAME_RE = /^[A-Za-z0-9._-]{1,128}$/;

/** The name a topology written to OUT gets by default: OUT's base name without `.json`. */
export function defaultName(output: string | undefined): string {
  if (output === undefined) return 'imported';
  const base = (output.split('/').pop() ?? '')
    .replace(/\.json$/, '')
    .replace(/[^A-Za-z0-9._-]/g, '_');
  return base === '' || base === '.' || base === '..' ? 'imported' : base.slice(0, 128);
}

export function importSummary(r: ImportResult, output: string): string {
  const c = r.counts;
  const lines = [
    `wrote ${output}: ${c.functions} functions, ${c.groups} IOMMU groups, ${c.bridges} bridges, ${c.pfs} SR-IOV PFs with ${c.vfs} VFs listed, ${c.numaNodes} NUMA nodes`,
    ...r.assumed.map((a) => `assumed: ${a}`),
    ...r.dropped.map((d) => `left out: ${d}`),
    `try it: passthru --sim ${output} list   (then groups, doctor, claim ADDR, agent, demo)`,
  ];
  return `${lines.join('\n')}\n`;
}

export function addImportCommand(program: Command, ctx: CommandContext): void {
  program
    .command('import')
    .description(
      "turn a server's lspci -vvnn -k -D output (optionally lspci -vmm -nnk -D and find /sys/kernel/iommu_groups -type l) into a topology --sim runs",
    )
    .argument(
      '<file...>',
      "files holding the dumps, in any order, concatenated or not; '-' reads stdin",
    )
    .option(
      '-o, --output <file>',
      'write the topology to a file (and a summary to stdout) instead of stdout',
    )
    .option('--name <name>', "topology name (default: the output file's name, or 'imported')")
    .action(async (files: string[], o: { output?: string; name?: string }) => {
      const name = o.name ?? defaultName(o.output);
      if (!NAME_RE.test(name) || name === '.' || name === '..')
        throw new PtError(
          'PT_ERR_INVALID_ARGUMENT',
          `--name takes letters, digits, '.', '_' and '-', not ${JSON.stringify(name.slice(0, 64))}`,
        );
      const read = ctx.env.readLines;
      if (read === undefined) throw new PtError('PT_ERR_INTERNAL', 'import needs a file reader');
      // The parser and the topology validator (typebox) load only when import runs: every other
      // command, `list` first, would pay for them at start-up (issue 11).
      const [{ DumpParser, MAX_LINE_CHARS }, { dumpsToTopology }] = await Promise.all([
        import('../../import/lspci-parse.js'),
        import('../../import/to-topology.js'),
      ]);
      const parser = new DumpParser();
      await read(
        files,
        { maxBytes: MAX_IMPORT_BYTES, maxLineBytes: MAX_LINE_CHARS * 4 },
        (text, file, line) => {
          parser.line(text, { file, line });
        },
      );
      const result = dumpsToTopology(parser.finish(), { name });
      const text = `${JSON.stringify(result.topology, null, 1)}\n`;
      if (o.output === undefined) {
        ctx.env.out(text);
        return;
      }
      await ctx.env.writeOutput(o.output, text);
      ctx.env.out(importSummary(result, o.output));
    });
}
