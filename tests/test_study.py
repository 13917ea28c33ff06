"""The user study of Table 3 (g4g.study): a frozen, blinded study; the rating API and its refusals; two
raters at once; the table; and a scripted rater in a real headless browser who stops and resumes."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, make_video

from g4g.evaluate.intervals import pooled_interval
from g4g.io.video import probe
from g4g.study.build import create_study
from g4g.study.server import COOKIE, create_app
from g4g.study.store import CRITERIA, Study
from g4g.study.table import measured_rows

METHODS = ("m_a", "m_b")
GOOD = ("c1", "c2", "c3")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """Ground truth and two methods for three good clips, and one clip per way of being unusable."""
    root = tmp_path_factory.mktemp("study_sources")
    for d in ("gt", *METHODS):
        (root / d).mkdir()
    for i, cid in enumerate(GOOD):
        make_video(root / "gt" / f"{cid}.mp4", n=40 + i)
        make_video(root / "m_a" / f"{cid}.mp4", n=40 + i, extra=("-metadata", "title=made by m_a"))
        make_video(root / "m_b" / f"{cid}.mkv", n=38 + i, size=(96, 72) if i else (48, 48), fps=30)  # any
        # container, rate, size and aspect ratio
    make_video(root / "m_a" / "only_a.mp4", n=40)  # no video from m_b (nor ground truth)
    for d in ("gt", "m_a"):
        make_video(root / d / "mute.mp4", n=40)
        make_video(root / d / "silent.mp4", n=40)
        make_video(root / d / "short.mp4", n=12)
        make_video(root / d / "cut.mp4", n=40)
    make_video(root / "m_b" / "mute.mp4", n=40, audio=None)
    make_video(root / "m_b" / "silent.mp4", n=40, audio="silence")
    make_video(root / "m_b" / "short.mp4", n=12)
    whole = make_video(root / "m_b" / "cut_src.mp4", n=40).read_bytes()
    (root / "m_b" / "cut.mp4").write_bytes(whole[:len(whole) // 3])  # truncated
    (root / "m_b" / "cut_src.mp4").unlink()
    return root


def digests(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def study_dir(sources, tmp_path_factory) -> Path:
    before = digests(sources)
    folder = tmp_path_factory.mktemp("study") / "s"
    create_study(folder, {m: sources / m for m in METHODS}, gt=sources / "gt", clips=10, seed=0)
    assert digests(sources) == before  # inputs are only read
    return folder


def test_study_is_frozen_blind_and_names_what_it_left_out(study_dir, sources):
    study = Study(study_dir)
    items = study.items()
    assert sorted({c for _, c, _, _ in items}) == list(GOOD)
    assert sorted({m for _, _, m, _ in items}) == ["ground_truth", *METHODS]
    rejects = {r["clip_id"]: r["reason"] for r in pq.read_table(study_dir / "rejects.parquet").to_pylist()}
    assert set(rejects) == {"only_a", "mute", "silent", "short", "cut"}
    assert "no video from ground_truth, m_b" in rejects["only_a"]
    assert "no audio stream" in rejects["mute"] and "silent audio" in rejects["silent"]
    assert "too short" in rejects["short"]
    assert "cut.mp4" in rejects["cut"]
    for cid in GOOD:
        infos = [probe(study_dir / "media" / media) for _, c, _, media in items if c == cid]
        assert {(i.width, i.height) for i in infos} == {(64, 48)}  # the ground truth's frame, m_b's fitted
        assert all(abs(i.fps - 25) < 0.01 and i.has_audio for i in infos)
        assert max(i.n_frames for i in infos) - min(i.n_frames for i in infos) <= 1  # one length per clip
    for _, _, _, media in items:  # nothing in a file's name or bytes says which method made it
        assert re.fullmatch(r"[0-9a-f]{32}\.mp4", media)  # random
        data = (study_dir / "media" / media).read_bytes()
        assert b"made by" not in data and b"Lavf" not in data
    with pytest.raises(ValueError, match="already holds a study"):
        create_study(study_dir, {m: sources / m for m in METHODS})


def rating(handle, v=3, s=4, r=5):
    return {"clip": handle, "visual_quality": v, "lip_sync": s, "realness": r}


def n_ratings(folder: Path) -> int:
    with sqlite3.connect(folder / "study.sqlite") as con:
        return con.execute("SELECT count(*) FROM ratings").fetchone()[0]


@pytest.fixture
def fresh_study(study_dir, tmp_path) -> Path:
    """A copy of the module's study with no raters, for a test that rates."""
    folder = tmp_path / "s"
    shutil.copytree(study_dir, folder)
    return folder


def joined(app, study: Study, name: str):
    client = app.test_client()
    token = study.invite(name)
    assert client.get(f"/join/{token}").status_code == 303
    return client, token


def test_api_refuses_what_it_must_and_changes_nothing(fresh_study):
    study, app = Study(fresh_study), create_app(fresh_study)
    anon = app.test_client()
    assert anon.get("/").status_code == 401
    assert anon.get("/api/next").status_code == 401 and "personal link" in anon.get("/api/next").json["error"]
    assert anon.get("/join/not-a-token").status_code == 401
    alice, token = joined(app, study, "alice")
    bob, _ = joined(app, study, "bob")
    page = alice.get("/")
    assert page.status_code == 200 and b"page.js" in page.data
    nxt = alice.get("/api/next").json
    assert (nxt["position"], nxt["total"], nxt["done"]) == (1, 9, False)
    served = (json.dumps(nxt) + page.data.decode() + alice.get("/page.js").data.decode()).replace(nxt["clip"], "")
    assert not re.search(r"m_a|m_b|ground_truth|\bc[123]\b|\.mp4", served)  # the random handle aside
    video = alice.get(nxt["video"])
    assert video.status_code == 200 and video.mimetype == "video/mp4"
    assert "ETag" not in video.headers and "Last-Modified" not in video.headers  # no file times (made in order)
    assert alice.get(nxt["video"], headers={"Range": "bytes=0-99"}).status_code == 206  # seeking works
    bobs = bob.get("/api/next").json["clip"]
    assert alice.get(f"/media/{bobs}").status_code == 404  # another rater's handle means nothing
    assert alice.post("/api/rating", json=rating(bobs)).status_code == 404
    for bad in (0, 6, "3", 3.5, True, None):
        resp = alice.post("/api/rating", json=rating(nxt["clip"], v=bad))
        assert resp.status_code == 400 and "visual_quality must be an integer from 1 to 5" in resp.json["error"]
    assert alice.post("/api/rating", json={**rating(nxt["clip"]), "method": "m_a"}).status_code == 400
    assert alice.post("/api/rating", data="3", content_type="text/plain").status_code == 400
    with sqlite3.connect(fresh_study / "study.sqlite") as con:
        second = con.execute("SELECT a.handle FROM assignments a JOIN raters r ON r.id = a.rater "
                             "WHERE r.name = 'alice' AND a.position = 2").fetchone()[0]
    resp = alice.post("/api/rating", json=rating(second))
    assert resp.status_code == 409 and "in order" in resp.json["error"]
    assert n_ratings(fresh_study) == 0
    assert alice.post("/api/rating", json=rating(nxt["clip"])).json == {"ok": True, "position": 2, "total": 9,
                                                                         "done": False}
    replay = alice.post("/api/rating", json=rating(nxt["clip"], v=1))
    assert replay.status_code == 409 and "counts once" in replay.json["error"]
    assert n_ratings(fresh_study) == 1 and study.ratings()[0]["visual_quality"] == 3
    new_token = study.invite("alice", renew=True)  # a lost link: the old one stops, the progress stays
    assert alice.get("/api/next").status_code == 401
    again = app.test_client()
    again.get(f"/join/{new_token}")
    assert again.get("/api/next").json["position"] == 2
    with sqlite3.connect(fresh_study / "study.sqlite") as con:
        stored = con.execute("SELECT name, token_sha256 FROM raters").fetchall()
    assert token != new_token and not any(new_token in str(v) for row in stored for v in row)  # no link kept,
    assert ("alice", hashlib.sha256(new_token.encode()).hexdigest()) in stored  # only its digest


def test_two_raters_at_once_do_not_interfere(fresh_study):
    study, app = Study(fresh_study), create_app(fresh_study)
    clients = {name: joined(app, study, name)[0] for name in ("alice", "bob")}
    sent, errors = {name: [] for name in clients}, []

    def rate_all(name, client, seed):
        rng = np.random.default_rng(seed)
        while not (nxt := client.get("/api/next").json)["done"]:
            scores = [int(x) for x in rng.integers(1, 6, 3)]
            resp = client.post("/api/rating", json=rating(nxt["clip"], *scores))
            if resp.status_code != 200:
                errors.append(resp.json)
            sent[name].append((nxt["clip"], scores))

    threads = [threading.Thread(target=rate_all, args=(n, c, i)) for i, (n, c) in enumerate(clients.items())]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with sqlite3.connect(fresh_study / "study.sqlite") as con:
        stored = {name: [(h, [v, s, r]) for h, v, s, r in con.execute(
            "SELECT a.handle, g.visual_quality, g.lip_sync, g.realness FROM ratings g JOIN assignments a "
            "ON a.rater = g.rater AND a.item = g.item JOIN raters r ON r.id = g.rater WHERE r.name = ? "
            "ORDER BY a.position", (name,))] for name in clients}
    assert stored == sent and all(len(v) == 9 for v in sent.values())


def test_table3_mean_and_interval_over_raters(fresh_study, tmp_path):
    # rater 1 gives 5 on ten clips, rater 2 gives 1 on one clip: the pooled mean is 51/11. Drawing raters,
    # a draw is both raters (51/11), rater 1 twice (5) or rater 2 twice (1), a quarter of the draws each
    # way: the interval is [1, 5]. Drawing single ratings instead would make it about [3.9, 5].
    rows = [{"rater": 1, "clip": f"c{i}", "method": "g4g", **dict.fromkeys(CRITERIA, 5)} for i in range(10)]
    rows += [{"rater": 2, "clip": "c0", "method": "g4g", **dict.fromkeys(CRITERIA, 1)}]
    (row,) = measured_rows(rows)
    assert row["visual_quality"] == pytest.approx(51 / 11)
    assert (row["n_raters"], row["n_ratings"], row["n_clips"]) == (2, 11, 10)
    assert (row["visual_quality_low"], row["visual_quality_high"]) == (1.0, 5.0)
    assert pooled_interval(np.array([5.0]), np.array([1.0])) is None  # one rater: no interval
    assert pooled_interval(np.array([8.0, 4.0]), np.array([2.0, 1.0])) == (4.0, 4.0)  # raters who agree


def browser(driver_path: str, browser_path: str, profile: Path):
    """A headless chromium with its own new profile (no cookies: a fresh browser), kept under the test's
    folder so nothing is left in /tmp."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser_path
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def rate_in_browser(driver, scores: list[int]) -> str:
    """Rate the clip on the page (after its video has loaded); returns the progress text it showed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.find_element(By.ID, "progress").text)
    wait.until(lambda d: d.execute_script("return document.getElementById('video').readyState >= 1"))
    progress = driver.find_element(By.ID, "progress").text
    assert driver.execute_script("return document.getElementById('video').duration") > 1.0
    for criterion, v in zip(CRITERIA, scores):
        driver.find_element(By.CSS_SELECTOR, f'input[name="{criterion}"][value="{v}"]').click()
    driver.find_element(By.ID, "submit").click()
    wait.until(lambda d: d.find_element(By.ID, "progress").text != progress or
               d.find_element(By.ID, "done").is_displayed())
    return progress


@pytest.mark.slow
def test_a_rater_in_a_real_browser_stops_resumes_and_is_counted(fresh_study, tmp_path):
    paths = subprocess.run([str(ROOT / "tools" / "headless-browser"), "install"], capture_output=True, text=True)
    if paths.returncode != 0:
        pytest.skip(f"no headless browser: {paths.stderr.strip()}")
    browser_path, driver_path = paths.stdout.split()
    study = Study(fresh_study)
    links = dict(line.split("\t") for line in subprocess.run(
        [sys.executable, "-m", "g4g", "study", "invite", "--study", str(fresh_study), "alice", "bob",
         "--url", "http://127.0.0.1:1"], capture_output=True, text=True, check=True).stdout.splitlines())
    access_log = tmp_path / "serve.log"
    server = subprocess.Popen([sys.executable, "-m", "g4g", "study", "serve", "--study", str(fresh_study),
                               "--port", "0"], stdout=subprocess.PIPE, stderr=access_log.open("w"), text=True)
    try:
        url = server.stdout.readline().split(" on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")  # loopback unless told otherwise
        alice_link = links["alice"].replace("http://127.0.0.1:1/", url)
        bob_link = links["bob"].replace("http://127.0.0.1:1/", url)
        rng = np.random.default_rng(7)
        plan = [[int(x) for x in rng.integers(1, 6, 3)] for _ in range(9)]

        def bob_rates():  # a second rater over HTTP while alice uses the browser
            opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
            opener.open(bob_link)
            for scores in plan[::-1]:
                nxt = json.load(opener.open(url + "api/next"))
                req = urllib.request.Request(url + "api/rating", json.dumps(rating(nxt["clip"], *scores)).encode(),
                                             {"Content-Type": "application/json"})
                opener.open(req)
            try:
                opener.open(urllib.request.Request(url + "api/rating", json.dumps(rating(nxt["clip"])).encode(),
                                                   {"Content-Type": "application/json"}))
            except urllib.error.HTTPError as e:
                bob_replay.append(e.code)

        bob_replay: list[int] = []
        bob = threading.Thread(target=bob_rates)
        bob.start()
        driver = browser(driver_path, browser_path, tmp_path / "profile1")
        try:
            driver.get(alice_link)
            shown = [rate_in_browser(driver, scores) for scores in plan[:4]]
        finally:
            driver.quit()  # the rater closes the browser: cookies and all are gone
        driver = browser(driver_path, browser_path, tmp_path / "profile2")
        try:
            driver.get(alice_link)
            shown += [rate_in_browser(driver, scores) for scores in plan[4:]]
            assert driver.find_element("id", "done").is_displayed()
            assert COOKIE in {c["name"] for c in driver.get_cookies()}
            assert not re.search(r"m_a|m_b|ground_truth", driver.page_source)
        finally:
            driver.quit()
        bob.join()
        assert shown == [f"Clip {i} of 9" for i in range(1, 10)]  # resumed at clip 5, not at clip 1
        assert bob_replay == [409]
    finally:
        server.terminate()
        server.wait(timeout=30)
    log = access_log.read_text()
    assert "GET /join/<token>" in log and not any(link.rsplit("/", 1)[1] in log for link in links.values())
    # the table holds exactly what the two raters submitted
    out = tmp_path / "table3"
    subprocess.run([sys.executable, "-m", "g4g", "study", "table", "--study", str(fresh_study), "--out", str(out)],
                   check=True, capture_output=True)
    with sqlite3.connect(fresh_study / "study.sqlite") as con:
        order = {name: [m for (m,) in con.execute(
            "SELECT i.method FROM assignments a JOIN items i ON i.id = a.item JOIN raters r ON r.id = a.rater "
            "WHERE r.name = ? ORDER BY a.position", (name,))] for name in ("alice", "bob")}
    submitted = [(m, s) for m, s in zip(order["alice"], plan)] + [(m, s) for m, s in zip(order["bob"], plan[::-1])]
    table = {r["method"]: r for r in csv.DictReader(out.with_suffix(".csv").open()) if r["source"] == "this study"}
    assert set(table) == {"ground_truth", *METHODS}
    for method, row in table.items():
        mine = [s for m, s in submitted if m == method]
        assert (int(row["n_ratings"]), int(row["n_raters"]), int(row["n_clips"])) == (len(mine), 2, 3)
        for k, c in enumerate(CRITERIA):
            assert float(row[c]) == pytest.approx(np.mean([s[k] for s in mine]), abs=1e-4)
    md = out.with_suffix(".md").read_text()
    assert "ground truth (control)" in md and "| G4G | paper | 3.41 | 4.26 | 4.34 | 20 |" in md
    assert study.progress() == [("alice", 9, 9), ("bob", 9, 9)]
