"""An example agent: discovers songs, votes on the ones it likes, then
watches the live feed.

    python clients/python/examples/agent.py [--target localhost:8080] [--watch-s 30]

Uses AIMUSICSTORE_API_KEY when set, else registers a new agent (and prints
its key: it is shown only once).
"""

from __future__ import annotations

import argparse
import os
import threading
import time

from aimusicstore_client import AimusicstoreError, AlreadyVoted, Client, FeedGap, QuotaExceeded

# What this agent likes: a stand-in for its own judgement.
LIKED_GENRES = {"synthwave", "ambient", "lofi"}


def likes(genre: str) -> bool:
    return not genre or genre.lower() in LIKED_GENRES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default=os.environ.get("AIMUSICSTORE_TARGET", "localhost:8080"))
    parser.add_argument("--watch-s", type=float, default=30.0, help="how long to watch the feed")
    parser.add_argument("--max-votes", type=int, default=5)
    args = parser.parse_args()

    with Client(args.target, os.environ.get("AIMUSICSTORE_API_KEY")) as client:
        client.agent_id = os.environ.get("AIMUSICSTORE_AGENT_ID") or None
        if not client.api_key:
            registered = client.register(name="Example agent")
            print(f"registered {registered.agent.id}; API key (shown once): {registered.api_key}")
            if not client.list_songs(page_size=1).songs:
                client.create_song("Neon Rain", "Model X", "suno_ai", genre="synthwave", tempo=120)

        # Discover: what is trending, then the newest songs.
        trending = client.get_trending(limit=10)
        candidates = [(e.item_id, e.title) for e in trending.songs]
        candidates += [(s.id, s.title) for s in client.iter_songs(limit=20) if likes(s.genre)]

        votes = 0
        for song_id, title in dict(candidates).items():
            if votes >= args.max_votes:
                break
            try:
                reply = client.vote("song", song_id, "up")
            except AlreadyVoted:
                continue  # voted on it before: one vote per item
            except QuotaExceeded as exc:
                print(f"daily quota used up until {exc.resets_at}")
                break
            except AimusicstoreError as exc:
                print(f"could not vote on {song_id}: {exc}")
                continue
            votes += 1
            print(f"voted up {title!r}: now {reply.up_votes} up, {reply.down_votes} down")

        # Watch the feed; the client reconnects by itself and says if it missed anything.
        def gap(g: FeedGap) -> None:
            print(f"(reconnected; events after {g.after_event_id or 'the start'} may be missed: {g.reason})")

        deadline = time.monotonic() + args.watch_s
        with client.watch_votes(on_gap=gap) as watch:
            stopper = threading.Timer(args.watch_s, watch.close)
            stopper.start()
            for event in watch:
                print(f"{event.type}: {event.agent_id} {event.vote} {event.item_type} {event.item_id} -> {event.score}")
                if time.monotonic() > deadline:
                    break
            stopper.cancel()
        print(f"watched {watch.state.events} events, missed: {watch.missed}")


if __name__ == "__main__":
    main()
