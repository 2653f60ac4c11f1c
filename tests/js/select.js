// Reads {"experiences": [...], "profiles": [{stableId, audiences}]} on stdin and prints, for
// each profile and experience, what the official SDK computes: isExperienceMatch,
// selectDistribution's index, and selectVariant's entry for every EntryReplacement baseline.
'use strict';

const shared = require('@ninetailed/experience.js-shared');

let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const { experiences, profiles } = JSON.parse(input);
  const results = profiles.map((profile) => experiences.map((experience) => {
    const match = shared.isExperienceMatch({ experience, profile });
    const index = shared.selectDistribution({ experience, profile }).index;
    const variants = {};
    for (const component of experience.components) {
      if (component.type !== 'EntryReplacement') continue;
      const { variant } = shared.selectVariant({ baseline: component.baseline, experience, profile });
      variants[component.baseline.id] = variant.hidden ? '' : variant.id;
    }
    return { match, index, variants };
  }));
  process.stdout.write(JSON.stringify(results));
});
