"""The shop's API: a health check and a hit counter kept in Redis."""

import os
import signal
import sys

import bottle
import redis

app = bottle.Bottle()
cache = redis.Redis(
    host=os.environ.get("REDIS_HOST", "localhost"),
    port=int(os.environ.get("REDIS_PORT", "6379")),
    socket_timeout=2,
    socket_connect_timeout=2,
)


@app.get("/api/health")
def health():
    try:
        cache.ping()
        redis_ok = True
    except redis.RedisError:
        redis_ok = False
    return {"status": "ok" if redis_ok else "degraded", "redis": redis_ok}


@app.get("/api/hits")
def hits():
    try:
        count = cache.incr("shop:hits")
    except redis.RedisError as err:
        bottle.response.status = 503
        return {"error": f"redis is not reachable: {err}"}
    return {"hits": count}


if __name__ == "__main__":
    # As PID 1 in a container, SIGTERM is ignored unless handled: stop at once on `docker stop`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    bottle.run(app, host="0.0.0.0", port=int(os.environ.get("PORT", "8000")))
