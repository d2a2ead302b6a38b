// Shared scaffolding for e2e scenarios: which stack is under test, skip reasons, and a
// per-file lab that is always torn down.
import { afterAll, beforeAll } from 'vitest';
import { Lab, labSupport, missingTools, stackBinaryMissing, stackKindFromEnv, type LabOptions, type StackKind } from './lab.js';

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
