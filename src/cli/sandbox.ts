/**
 * What `--enable-sandbox` / `--enable-seccomp` left this process with, as reported by the native
 * launcher (native/launcher.c, which runs before Node and documents the confinement in its
 * header). Node itself changes nothing here: a multi-threaded process cannot enter a user
 * namespace, and a mount namespace or capability set changed by one thread is not the others'.
 *
 * Inside the sandbox the namespace agent is started through the launcher's broker: the launcher
 * points SLIPWAY_NATIVE_DIR at /.slipway/native, where `slipway-agent` is the launcher in client
 * mode, so NamespaceAgent spawns it as usual and the broker (outside the sandbox, with the
 * capabilities setns needs) runs the real agent for the command line's target only.
 */

import type { Logger } from 'pino';

export interface LauncherState {
  sandbox: boolean;
  seccomp: boolean;
  /** Path of the agent broker socket inside the sandbox. */
  brokerPath?: string;
  nativeDir?: string;
}

/** Read the launcher's report from the environment it passed to Node. */
export function launcherState(env: NodeJS.ProcessEnv): LauncherState {
  const did = (env['SLIPWAY_LAUNCHER'] ?? '').split(',');
  const broker = env['SLIPWAY_BROKER'];
  return {
    sandbox: did.includes('sandbox'),
    seccomp: did.includes('seccomp'),
    brokerPath: broker || undefined,
    nativeDir: env['SLIPWAY_NATIVE_DIR'],
  };
}

/**
 * Check that the launcher delivered what the command line asked for, and log it. Throws with an
 * actionable message when it did not (a silently unconfined process would be worse than none).
 */
export function checkConfinement(want: { sandbox: boolean; seccomp: boolean }, env: NodeJS.ProcessEnv, log?: Logger): LauncherState {
  const s = launcherState(env);
  const missing = [want.sandbox && !s.sandbox ? '--enable-sandbox' : '', want.seccomp && !s.seccomp ? '--enable-seccomp' : ''].filter(Boolean);
  if (missing.length > 0) {
    throw new Error(
      `${missing.join(' and ')}: the confinement is set up by the native launcher before Node starts, and it did not run. ` +
        'Start slipway through bin/slipway-slirp4netns and check that build/Release/slipway-launcher exists (npm install builds it).',
    );
  }
  if (s.sandbox && (s.brokerPath === undefined || !s.nativeDir)) {
    throw new Error('--enable-sandbox: the launcher did not pass the agent broker (SLIPWAY_BROKER, SLIPWAY_NATIVE_DIR): the namespace agent cannot be started');
  }
  if (s.sandbox || s.seccomp) {
    log?.info(
      {
        sandbox: s.sandbox ? 'mount namespace: /etc, /run; read-only /usr, /lib*, node, package; caps: CAP_NET_BIND_SERVICE only (as root)' : false,
        seccomp: s.seccomp,
        noNewPrivs: true,
      },
      'confined by slipway-launcher',
    );
  }
  return s;
}
