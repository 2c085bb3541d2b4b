// StreamVotes through the gateway port (k6/net/grpc, server reflection):
// STREAMS virtual users, each holding one stream open at a time and sending
// PER_STREAM votes on it (reading results as they come), as fast as the
// service answers. Votes are distinct (agent, song) pairs: the i-th stream
// of the run (counting across VUs) is agent i % keys voting on block
// floor(i / keys) of PER_STREAM songs.
// Env: TARGET (host:port), SEED (JSON {keys, songs}), STREAMS, PER_STREAM, DURATION, OFFSET,
// SONG_BASE (first song index).
import grpc from 'k6/net/grpc';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import { SharedArray } from 'k6/data';

const keys = new SharedArray('keys', () => JSON.parse(open(__ENV.SEED)).keys);
const songs = new SharedArray('songs', () => JSON.parse(open(__ENV.SEED)).songs);
const PER_STREAM = Number(__ENV.PER_STREAM || 1000);
const acknowledged = new Counter('acknowledged_votes');
const refused = new Counter('refused_votes');
const failedStreams = new Counter('failed_streams');
const streamSeconds = new Trend('stream_seconds');
const client = new grpc.Client();

export const options = {
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
  scenarios: {
    streams: {
      executor: 'constant-vus',
      vus: Number(__ENV.STREAMS || 8),
      duration: __ENV.DURATION || '60s',
    },
  },
};

export default function () {
  if (exec.vu.iterationInScenario === 0) {
    client.connect(__ENV.TARGET, { plaintext: true, reflect: true });
  }
  const i = exec.vu.idInTest - 1 + exec.vu.iterationInScenario * Number(__ENV.STREAMS || 8) + Number(__ENV.OFFSET || 0);
  const agent = i % keys.length;
  const first = Number(__ENV.SONG_BASE || 0) + Math.floor(i / keys.length) * PER_STREAM;
  const started = Date.now();
  const stream = new grpc.Stream(client, 'aimusicstore.vote.v1.VoteService/StreamVotes', {
    metadata: { authorization: `Bearer ${keys[agent]}` },
  });
  stream.on('data', (result) => {
    if (result.status === 'recorded') acknowledged.add(1);
    else refused.add(1);
  });
  stream.on('error', () => failedStreams.add(1));
  stream.on('end', () => streamSeconds.add((Date.now() - started) / 1000));
  for (let j = 0; j < PER_STREAM; j++) {
    const n = first + j;
    stream.write({ itemType: 'song', itemId: songs[n % songs.length], vote: n % 3 ? 'up' : 'down' });
  }
  stream.end();
}
