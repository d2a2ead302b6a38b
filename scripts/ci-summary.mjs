#!/usr/bin/env node
// Summarise a vitest JSON report (--reporter=json --outputFile.json=FILE) for CI.
//   node scripts/ci-summary.mjs test-results/vitest.json
// Lists failed and skipped tests by name, and prints as the LAST line exactly:
//   N passed, N failed, N skipped
// Exit status: 1 if any test (or test file) failed or the report is missing/unreadable, else 0.
//
// vitest's JSON report drops errors thrown in beforeAll/afterAll hooks: the file is "failed" but
// its tests appear as "skipped". Tests skipped on purpose in our e2e suites carry
// "[skipped: <reason>]" in a describe title; any OTHER skipped test inside a failed file is
// counted as failed ("not run: setup failed"). A failed file with no tests at all (e.g. an import
// error) counts as one failure.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

const file = process.argv[2] ?? 'test-results/vitest.json';
let report;
try {
  report = JSON.parse(readFileSync(file, 'utf8'));
} catch (e) {
  console.log(`ci-summary: cannot read ${file}: ${e.message}`);
  console.log('0 passed, 1 failed, 0 skipped');
  process.exit(1);
}

const passed = [];
const failed = [];
const skipped = [];
const rel = (p) => relative(process.cwd(), p);

for (const f of report.testResults ?? []) {
  const tests = f.assertionResults ?? [];
  const fileFailed = f.status === 'failed';
  const anyTestFailed = tests.some((t) => t.status === 'failed');
  if (fileFailed && tests.length === 0) {
    failed.push({ name: `${rel(f.name)} (file failed to run)`, why: (f.message || '').split('\n')[0] });
    continue;
  }
  for (const t of tests) {
    const name = `${rel(f.name)} > ${t.fullName ?? t.title}`;
    switch (t.status) {
      case 'passed':
        passed.push({ name });
        break;
      case 'failed':
        failed.push({ name, why: (t.failureMessages?.[0] ?? '').split('\n')[0] });
        break;
      default: {
        // skipped | pending | todo | disabled
        const deliberate = (t.ancestorTitles ?? []).some((a) => a.includes('[skipped:')) || t.status === 'todo';
        if (fileFailed && !deliberate && !anyTestFailed) {
          failed.push({ name, why: 'not run: suite setup (beforeAll) failed, see the test log' });
        } else if (fileFailed && !deliberate && anyTestFailed && f.message) {
          failed.push({ name, why: `not run: ${f.message.split('\n')[0]}` });
        } else {
          const reason = (t.ancestorTitles ?? []).map((a) => /\[skipped: (.*)\]$/.exec(a)?.[1]).find(Boolean);
          skipped.push({ name, why: reason ?? t.status });
        }
      }
    }
  }
  if (fileFailed && !anyTestFailed && tests.every((t) => t.status === 'passed')) {
    failed.push({ name: `${rel(f.name)} (file failed: ${(f.message || 'hook error').split('\n')[0]})` });
  }
}

if (skipped.length) {
  console.log(`Skipped tests (${skipped.length}):`);
  for (const s of skipped) console.log(`  - ${s.name}${s.why && !s.name.includes(s.why) ? `  (${s.why})` : ''}`);
}
if (failed.length) {
  console.log(`Failed tests (${failed.length}):`);
  for (const s of failed) console.log(`  - ${s.name}${s.why ? `\n      ${s.why}` : ''}`);
}
console.log(`${passed.length} passed, ${failed.length} failed, ${skipped.length} skipped`);
process.exit(failed.length > 0 ? 1 : 0);
