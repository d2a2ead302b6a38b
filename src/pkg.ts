/**
 * Where the package is installed. Like native.ts, this module sits one level below the package
 * root in every form it runs in (src/ under vitest, dist/ after tsc, and the single-file bundles
 * dist/*.bundle.cjs, where import.meta.url is the bundle's own URL), so `..` is the root.
 */

import { readFileSync } from 'node:fs';

/** The package root directory, as a file: URL ending in '/'. */
export const packageRootUrl: URL = new URL('..', import.meta.url);

/** The package's version, from its package.json. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('package.json', packageRootUrl), 'utf8')) as { version: string }).version;
}
