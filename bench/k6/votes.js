// Votes at a constant arrival rate through the gateway (k6).
// Each iteration casts a distinct (agent, song) vote, so none is "Already voted".
// Env: BASE_URL, SEED (JSON file {keys: [...], songs: [...]}), RATE, DURATION, OFFSET.
import http from 'k6/http';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import { SharedArray } from 'k6/data';

// One SharedArray element per key and per song: k6 decodes an element on
// every access, so an array of two big arrays cost two JSON parses of the
// whole seed per request (most of k6's CPU at these rates).
const keys = new SharedArray('keys', () => JSON.parse(open(__ENV.SEED)).keys);
const songs = new SharedArray('songs', () => JSON.parse(open(__ENV.SEED)).songs);
const acknowledged = new Counter('acknowledged_votes');
const refused = new Counter('refused_votes');
// Why votes were refused, so a run's errors can be told apart: 0 is a
// transport error (connection refused or reset, timeout).
const REFUSALS = [0, 400, 409, 429, 500, 502, 503, 504];
const refusedBy = Object.fromEntries(REFUSALS.map((code) => [code, new Counter(`refused_${code}`)]));
const refusedOther = new Counter('refused_other');

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
  scenarios: {
    votes: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 1000),
      timeUnit: '1s',
      duration: __ENV.DURATION || '60s',
      preAllocatedVUs: Number(__ENV.VUS || 200),
      maxVUs: Number(__ENV.MAX_VUS || 1000),
    },
  },
};

export default function () {
  const i = exec.scenario.iterationInTest + Number(__ENV.OFFSET || 0);
  const key = keys[i % keys.length];
  const song = songs[Math.floor(i / keys.length) % songs.length];
  const body = JSON.stringify({ item_type: 'song', item_id: song, vote: i % 3 ? 'up' : 'down' });
  const res = http.post(`${__ENV.BASE_URL}/api/v1/vote`, body, {
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` },
  });
  if (res.status === 200) {
    acknowledged.add(1);
  } else {
    refused.add(1);
    (refusedBy[res.status] || refusedOther).add(1);
  }
}
