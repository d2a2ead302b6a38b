// Shared scaffolding for e2e scenarios: which stack is under test, skip reasons, and a
// per-file lab that is always torn down.
import { afterAll, beforeAll } from 'vitest';
import {
  Lab, labSupport, missingTools, stackBinaryMissing, stackKindFromEnv,
  type Container, type LabOptions, type Stack, type StackKind, type StackOptions,
} from './lab.js';

export const STACK: StackKind = stackKindFromEnv();

/** Why this whole e2e file cannot run here, or undefined if it can. */
export function skipReason(tools: string[] = []): string | undefined {
  const sup = labSupport();
  if (!sup.ok) return sup.reason;
  return stackBinaryMissing(STACK) ?? missingTools(tools);
}

/** Why a slipway-only scenario cannot run against the current stack. */
export function slipwayOnly(): string | undefined {
  return STACK === 'slipway' ? undefined : `slipway-specific (stack under test: ${STACK})`;
}

/** Title helper so a skipped describe shows its reason in every report. */
export function titled(title: string, reason: string | undefined): string {
  return reason ? `${title} [skipped: ${reason}]` : `${title} [stack: ${STACK}]`;
}

/** Build a lab in beforeAll and destroy it in afterAll (even when tests fail). */
export function useLab(name: string, opts: LabOptions = {}): () => Lab {
  let lab: Lab | undefined;
  beforeAll(async () => {
    lab = await Lab.create(name, opts);
  });
  afterAll(async () => {
    await lab?.destroy();
  });
  return () => {
    if (!lab) throw new Error('lab was not created (see beforeAll error)');
    return lab;
  };
}

/**
 * A container with the stack under test attached, for the tests of the enclosing describe: made
 * in beforeAll, the stack stopped in afterAll (even when tests fail). `opts` may be a function
 * when the options need the lab (a path in lab().tmp); it is called first in beforeAll. Set-up
 * that needs the running stack goes in a beforeAll of its own after this call.
 */
export function useStack(
  lab: () => Lab,
  opts: StackOptions | (() => StackOptions),
): { ctr: () => Container; stack: () => Stack } {
  let ctr: Container | undefined;
  let stack: Stack | undefined;
  beforeAll(async () => {
    const o = typeof opts === 'function' ? opts() : opts;
    ctr = await lab().createContainer();
    stack = await lab().startStack(STACK, ctr, o);
  });
  afterAll(async () => {
    await stack?.stop();
  });
  return {
    ctr: () => {
      if (!ctr) throw new Error('container was not created (see beforeAll error)');
      return ctr;
    },
    stack: () => {
      if (!stack) throw new Error('stack was not started (see beforeAll error)');
      return stack;
    },
  };
}

/** What tcp-client.ts's `echo` mode reports: messages of 1 to 40,000 bytes, each compared. */
export interface EchoResult {
  exchanges: number;
  bytes: number;
  mismatches: number;
  meanUs: number;
}

/** Run tcp-client.ts `echo` in the container against host:port, `count` exchanges on one connection. */
export async function tcpEcho(ctr: Container, host: string, port: number, count: number): Promise<EchoResult> {
  const r = await ctr.node('tcp-client.ts', ['echo', host, String(port), String(count)], { timeoutMs: 60_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as EchoResult;
  } catch {
    throw new Error(`tcp-client gave no result.\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
}
