/**
 * Node's entry for bin/slipway-slirp4netns when the bundle is built (the script checks that it is
 * not older than tsc's output): dist/slirp4netns.bundle.cjs, started with its code cache (boot.cts).
 */
import { join } from 'node:path';
import { boot, bundlePaths } from './boot.cjs';

const { bundle, cache } = bundlePaths(join(__dirname, '..'), 'slirp4netns');
boot(bundle, cache);
