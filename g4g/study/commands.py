"""`g4g study create | invite | serve | table`: the user study of Table 3.

    g4g study create --method g4g=results/videos/hdtf/g4g --method wav2lip=DIR ... [--gt RAW_DIR] [--clips 4]
    g4g study invite alice bob ...       personal links (or --count 20); --renew NAME replaces a lost link
    g4g study serve [--host H] [--port P]  the rating page, on loopback unless --host says otherwise
    g4g study table                        results/table3.csv and .md, the paper's rows beside them

Every subcommand takes --study FOLDER (default results/study): the study's SQLite file and its videos. Each
action imports the code it runs when it runs (the web server's flask only for `serve`).
"""

from __future__ import annotations

DEFAULT = "results/study"


def cmd_create(a) -> None:
    from g4g.evaluate.folders import parse_methods
    from g4g.study.build import create_study

    study = create_study(a.study, parse_methods(a.method), a.gt, a.clips, a.seed, a.height)
    items = study.items()
    print(f"{study.folder}: {len({i[1] for i in items})} clips x {len({i[2] for i in items})} methods = "
          f"{len(items)} videos; rejected clips: {study.folder}/rejects.parquet. Next: g4g study invite")


def cmd_invite(a) -> None:
    from g4g.study.store import Study

    study = Study(a.study)
    if a.renew and (a.count or not a.names):
        raise ValueError("--renew makes new links for raters named on the command line, not --count")
    names = list(a.names)
    taken, i = {n for n, *_ in study.progress()} | set(names), 0
    while len(names) < len(a.names) + a.count:  # --count: the next free rater_NN names
        i += 1
        if f"rater_{i:02d}" not in taken:
            names.append(f"rater_{i:02d}")
    if not names:
        for name, done, total in study.progress():
            print(f"{name:<20} {done:>4} of {total} rated")
        return
    url = a.url.rstrip("/")
    for name in names:
        print(f"{name}\t{url}/join/{study.invite(name, renew=a.renew)}")


def cmd_serve(a) -> None:
    from g4g.study.server import serve

    serve(a.study, a.host, a.port, a.behind_proxy)


def cmd_table(a) -> None:
    from g4g.study.table import write_table3

    rows = write_table3(a.study, a.out)
    for r in rows:
        print(f"{r['label']:<24} " + "  ".join(f"{c} {r[c]:.2f}" for c in ("visual_quality", "lip_sync", "realness"))
              + f"  ({r['n_raters']} raters, {r['n_ratings']} ratings)")
    print(f"{a.out}.csv, {a.out}.md")


def register(add) -> None:
    """Define `g4g study` and its actions; `add(name)` makes a subcommand's parser (g4g.cli)."""
    study = add("study").add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str):
        p = study.add_parser(name, help=help, description=help)
        p.add_argument("--study", default=DEFAULT, help=f"the study's folder (default {DEFAULT})")
        return p

    p = action("create", "freeze a study: clips drawn among those every method has, videos re-encoded blind")
    p.add_argument("--method", required=True, action="append", metavar="NAME=FOLDER",
                   help="a method's videos, {clip}.<any container>; repeatable")
    p.add_argument("--gt", help="the ground-truth videos (a raw dataset folder), rated as a control")
    p.add_argument("--clips", type=int, default=4, help="clips in the study (the paper: 4 per dataset)")
    p.add_argument("--seed", type=int, default=0, help="seed of the clip draw")
    p.add_argument("--height", type=int, default=0,
                   help="rows of the re-encoded videos (0: each clip's own, at most 1080)")
    p.set_defaults(fn=cmd_create)

    p = action("invite", "personal links for raters (none named: each rater's progress)")
    p.add_argument("names", nargs="*", help="raters' names (yours to choose; only you see them)")
    p.add_argument("--count", type=int, default=0, help="add this many raters named rater_01, rater_02, ...")
    p.add_argument("--renew", action="store_true", help="a new link for each named rater; the old one stops")
    p.add_argument("--url", default="http://127.0.0.1:8050", help="the address raters reach `serve` at")
    p.set_defaults(fn=cmd_invite)

    p = action("serve", "the rating web application")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8050, help="port (0: any free one, printed)")
    p.add_argument("--behind-proxy", action="store_true",
                   help="trust X-Forwarded-Proto/-For from an HTTPS proxy in front (the cookie becomes Secure)")
    p.set_defaults(fn=cmd_serve)

    p = action("table", "Table 3 from the ratings: results/table3.csv and .md")
    p.add_argument("--out", default="results/table3", help="path without suffix")
    p.set_defaults(fn=cmd_table)
