// Drives the official NinetailedApiClient (v7) against an Experience API at argv[2].
// Every response goes through the client's own zod schemas; prints what it parsed as JSON.
'use strict';

const shared = require('@ninetailed/experience.js-shared');
const crypto = require('crypto');

const [url, clientId, environment = 'main'] = process.argv.slice(2);

function context(path) {
  return {
    url: `https://example.com${path}`,
    referrer: 'https://referrer.example/',
    locale: 'en-US',
    userAgent: 'node wire check',
    document: { title: 'Wire check' },
  };
}

function common(path) {
  return { messageId: crypto.randomUUID(), timestamp: Date.now(), ctx: context(path) };
}

async function main() {
  const client = new shared.NinetailedApiClient({ clientId, environment, url });
  const location = { city: 'Berlin', countryCode: 'DE', continent: 'EU' };
  const page = shared.buildPageEvent({ ...common('/pricing?utm_campaign=spring'), properties: {}, location });
  const created = await client.createProfile({ events: [page] }, { enabledFeatures: ['location'] });
  const profileId = created.profile.id;
  const identify = shared.buildIdentifyEvent({ ...common('/'), traits: { tier: 'gold' }, userId: 'wire-user' });
  const track = shared.buildTrackEvent({ ...common('/'), event: 'Added to cart', properties: { sku: 'A1' } });
  const updated = await client.updateProfile({ profileId, events: [identify, track] });
  const fetched = await client.getProfile(profileId);
  const component = shared.buildComponentViewEvent({
    ...common('/'), componentType: 'Entry', componentId: 'hero', experienceId: 'exp-hero', variantIndex: 1,
  });
  const sticky = await client.updateProfile({ profileId, events: [component] });
  const preflight = await client.createProfile(
    { events: [shared.buildPageEvent({ ...common('/preflight'), properties: {} })] },
    { preflight: true, locale: 'de' },
  );
  const batchEvents = [];
  for (let i = 0; i < 3; i += 1) {
    batchEvents.push({ ...shared.buildPageEvent({ ...common(`/batch/${i}`), properties: {} }), anonymousId: `batch-${i}` });
    batchEvents.push({
      ...shared.buildIdentifyEvent({ ...common('/'), traits: { n: i }, userId: `batch-user-${i}` }),
      anonymousId: `batch-${i}`,
    });
  }
  const many = await client.upsertManyProfiles({ events: batchEvents });
  let missing = null;
  try {
    await client.getProfile('does-not-exist');
  } catch (error) {
    missing = String(error.message);
  }
  process.stdout.write(JSON.stringify({ created, updated, fetched, sticky, preflight, many, missing }));
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
