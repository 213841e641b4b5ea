"""Two-service Flask chain for benches/overhead.sh: service A answers GET /a
by calling service B's GET /b (a new connection per call, with requests),
both on Werkzeug's threaded development server, request logging off.

    python3 flask_chain.py b PORT
    python3 flask_chain.py a PORT B_PORT
"""
import logging
import sys

import requests
from flask import Flask

role, port = sys.argv[1], int(sys.argv[2])
app = Flask(f"chain-{role}")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

if role == "a":
    down = f"http://127.0.0.1:{int(sys.argv[3])}/b"

    @app.get("/a")
    def a():
        r = requests.get(down, timeout=10)
        return "a:" + r.text

else:

    @app.get("/b")
    def b():
        return "b-ok"


app.run(host="127.0.0.1", port=port, threaded=True)
