// The official Node client feeding the benchmark stub: node node_upsert.js FILE URL MODE
// MODE "single": one upsertManyProfiles call with every event (the client neither chunks nor
// runs concurrently); "chunked": sequential calls of 50 events (what the API's limits allow).
'use strict';
const fs = require('fs');
const readline = require('readline');
const path = require('path');
const shared = require(path.join(process.cwd(), 'node_modules/@ninetailed/experience.js-shared'));

async function main() {
  const [file, url, mode] = process.argv.slice(2);
  const client = new shared.NinetailedApiClient({ clientId: 'bench-org', environment: 'main', url });
  const started = process.hrtime.bigint();
  const lines = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
  const events = [];
  let chunk = [];
  let profiles = 0;
  let requests = 0;
  const send = async (batch) => {
    const answer = await client.upsertManyProfiles({ events: batch }, { timeout: 600000, retries: 0 });
    profiles += (answer || []).length;
    requests += 1;
  };
  for await (const line of lines) {
    if (!line.trim()) continue;
    const row = JSON.parse(line);
    const event = shared.buildIdentifyEvent({
      messageId: `import-${row.id}`, timestamp: Date.now(), channel: 'server',
      ctx: { url: 'http://localhost/', referrer: '', userAgent: 'node', locale: 'en-US' },
      userId: String(row.id), traits: row.traits || {},
    });
    event.anonymousId = `bench-${row.id}`;
    if (mode === 'single') {
      events.push(event);
    } else {
      chunk.push(event);
      if (chunk.length === 50) { await send(chunk); chunk = []; }
    }
  }
  if (mode === 'single') await send(events);
  else if (chunk.length) await send(chunk);
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  process.stdout.write(JSON.stringify({ elapsed_s: elapsed, profiles, requests,
                                        peak_rss_kib: peakRssKib() }) + '\n');
}

// This process's own peak RSS (VmHWM): resourceUsage().maxRSS survives exec, so it would
// report the peak of the benchmark process that started this one.
function peakRssKib() {
  try {
    const line = fs.readFileSync('/proc/self/status', 'ascii').split('\n')
      .find((l) => l.startsWith('VmHWM:'));
    if (line) return Number(line.split(/\s+/)[1]);
  } catch (error) { /* not Linux */ }
  return Math.round(process.resourceUsage().maxRSS);
}

main().catch((error) => { console.error(error); process.exit(1); });
