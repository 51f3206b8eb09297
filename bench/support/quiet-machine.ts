/**
 * A bench measures only on a quiet machine. This module tells whether the machine was quiet: it waits for the
 * load average to settle before a run, and during the run it compares the CPU time the whole machine spent with
 * the CPU time this process and its descendants (the servers under test) spent. The difference is someone
 * else's work; when it exceeds a budget the run is refused, because spinning compute threads (llama-server's)
 * and a single thread (ours) suffer from a neighbour in very different ways and the ratio would mean nothing.
 *
 * Linux only (/proc). Times are in clock ticks (USER_HZ, 100 per second on Linux).
 */
import { readdirSync, readFileSync } from "node:fs";
import os from "node:os";

const TICKS_PER_SECOND = 100;

/** Busy ticks of the whole machine: everything but idle and iowait. */
function machineBusyTicks(): number {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return user! + nice! + system! + irq! + softirq! + (steal ?? 0);
}

interface ProcStat {
  readonly ppid: number;
  /** utime + stime + cutime + cstime: its own time and that of children it has reaped. */
  readonly ticks: number;
}

function readProcStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name is in parentheses and may contain spaces: fields start after the last ')'.
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    const ppid = Number(fields[1]);
    const [utime, stime, cutime, cstime] = [fields[11], fields[12], fields[13], fields[14]].map(Number);
    return { ppid, ticks: utime! + stime! + cutime! + cstime! };
  } catch {
    return undefined; // exited meanwhile
  }
}

/**
 * CPU ticks of this process and every live descendant. A descendant that exits is reaped by its parent,
 * whose cutime then carries its time, so the sum never loses a finished server's work.
 */
function ownTreeTicks(): number {
  const stats = new Map<number, ProcStat>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcStat(Number(entry));
    if (stat) stats.set(Number(entry), stat);
  }
  const tree = new Set([process.pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, stat] of stats) {
      if (!tree.has(pid) && tree.has(stat.ppid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  let ticks = 0;
  for (const pid of tree) ticks += stats.get(pid)?.ticks ?? 0;
  return ticks;
}

export interface QuietReport {
  readonly load_average_before: number[];
  readonly load_average_after: number[];
  readonly seconds: number;
  /** Average cores used by processes outside this bench during the run. */
  readonly foreign_cpu_cores: number;
  readonly max_foreign_cpu_cores: number;
  readonly quiet: boolean;
}

const loadAverage = () => os.loadavg().map((x) => Math.round(x * 100) / 100);

/**
 * Waits (up to `settleSeconds`) until the 1-minute load average is below `maxLoad`, so that the previous run's
 * own load has decayed; returns false if it never is.
 */
export async function waitForQuiet(maxLoad: number, settleSeconds: number, log: (message: string) => void): Promise<boolean> {
  const deadline = Date.now() + settleSeconds * 1000;
  while (os.loadavg()[0]! >= maxLoad) {
    if (Date.now() > deadline) return false;
    log(`load average ${loadAverage().join(" ")}: waiting for it to fall below ${maxLoad}`);
    await new Promise((resolve) => setTimeout(resolve, 10_000));
  }
  return true;
}

/** Starts watching; `stop()` says how much CPU others used meanwhile and whether that was within the budget. */
export function watchForeignCpu(maxForeignCores: number): { stop(): QuietReport } {
  const loadBefore = loadAverage();
  const started = performance.now();
  const machineBefore = machineBusyTicks();
  const ownBefore = ownTreeTicks();
  return {
    stop() {
      const seconds = (performance.now() - started) / 1000;
      const foreignTicks = machineBusyTicks() - machineBefore - (ownTreeTicks() - ownBefore);
      // Both counters tick at USER_HZ; rounding of the two reads can make a quiet machine's figure slightly negative.
      const foreign = Math.max(0, foreignTicks / TICKS_PER_SECOND / seconds);
      return {
        load_average_before: loadBefore,
        load_average_after: loadAverage(),
        seconds: Math.round(seconds),
        foreign_cpu_cores: Math.round(foreign * 1000) / 1000,
        max_foreign_cpu_cores: maxForeignCores,
        quiet: foreign <= maxForeignCores,
      };
    },
  };
}
