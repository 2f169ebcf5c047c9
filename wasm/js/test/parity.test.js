// The parity scenarios (parity/scenarios/, see parity/README.md) on the JavaScript hosts,
// under node:test: `node --test-reporter=spec test/parity.test.js`. One test per scenario
// and host; a scenario that needs what a host cannot do (store faults and races over
// HTTP), or a setting it cannot take, is skipped with the reason, and each host ends
// with a line counting them.
import { after, describe, test } from 'node:test';
import { exampleHttp, middleware } from './parity/hosts.js';
import { loadScenarios, missingNeed, play } from './parity/runner.js';

const scenarios = loadScenarios();
const summaries = [];

for (const kind of [middleware, exampleHttp]) {
  const counts = { passed: 0, failed: 0, skipped: new Map() };
  const skip = (t, why, name) => {
    counts.skipped.set(why, [...(counts.skipped.get(why) ?? []), name]);
    t.skip(why);
  };
  describe(kind.name, () => {
    for (const scenario of scenarios) {
      test(scenario.name, async (t) => {
        const need = missingNeed(scenario, kind.supports);
        if (need !== undefined) return skip(t, `needs ${need}`, scenario.name);
        const made = await kind.make(scenario.config);
        if (made.skip !== undefined) return skip(t, made.skip, scenario.name);
        try {
          await play(scenario, made.host);
          counts.passed += 1;
        } catch (error) {
          counts.failed += 1;
          throw error;
        } finally {
          made.close();
        }
      });
    }
  });
  summaries.push(() => {
    const host = `parity[${kind.name}]`;
    const skipped = [...counts.skipped.values()].reduce((n, names) => n + names.length, 0);
    for (const [why, names] of counts.skipped) console.log(`${host}: skipped (${why}): ${names.join(', ')}`);
    console.log(`${host}: ${counts.passed} passed, ${counts.failed} failed, ${skipped} skipped`);
  });
}

after(() => {
  for (const summary of summaries) summary();
});
