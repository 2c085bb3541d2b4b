// Batches of votes at a constant arrival rate through the gateway (k6), to
// read the latency of a batch at a given offered vote rate.
// Batch i is agent i % keys voting on BATCH songs of its own block, so no
// vote is "Already voted" while i < keys * songs / BATCH.
// Env: BASE_URL, SEED (JSON {keys, songs}), RATE (batches/s), DURATION, OFFSET (first batch),
// SONG_BASE (first song index), BATCH.
import http from 'k6/http';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import { SharedArray } from 'k6/data';

const keys = new SharedArray('keys', () => JSON.parse(open(__ENV.SEED)).keys);
const songs = new SharedArray('songs', () => JSON.parse(open(__ENV.SEED)).songs);
const SIZE = Number(__ENV.BATCH || 100);
const acknowledged = new Counter('acknowledged_votes');
const refused = new Counter('refused_votes');
const failedCalls = new Counter('failed_calls');

export const options = {
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
  scenarios: {
    batches: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 100),
      timeUnit: '1s',
      duration: __ENV.DURATION || '60s',
      preAllocatedVUs: Number(__ENV.VUS || 50),
      maxVUs: Number(__ENV.MAX_VUS || 400),
    },
  },
};

export default function () {
  const i = exec.scenario.iterationInTest + Number(__ENV.OFFSET || 0);
  const key = keys[i % keys.length];
  const first = Number(__ENV.SONG_BASE || 0) + Math.floor(i / keys.length) * SIZE;
  const votes = [];
  for (let j = 0; j < SIZE; j++) {
    votes.push({ item_type: 'song', item_id: songs[(first + j) % songs.length], vote: (first + j) % 3 ? 'up' : 'down' });
  }
  const res = http.post(`${__ENV.BASE_URL}/api/v1/votes:batchCreate`, JSON.stringify({ votes }), {
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` },
  });
  if (res.status !== 200) {
    failedCalls.add(1);
    refused.add(SIZE);
    return;
  }
  const recorded = res.json('results.#(status=="recorded")#') || [];
  acknowledged.add(recorded.length);
  refused.add(SIZE - recorded.length);
}
