"""``zoo weights``: list, fetch and verify the published checkpoint files.

    zoo weights list [NAME]         every tag, its file(s), local copy or missing
    zoo weights fetch NAME TAG      download (progress bar), hash-checked
    zoo weights verify [NAME]       hash every local file, with a summary

``zoo weights list`` reads plain files only (:mod:`zoo.weights` imports Keras
inside the loaders, not at the top), so it answers without importing Keras.
"""

import fnmatch

from zoo.cli.common import format_table, load_package


def _zw(light=False):
    """``zoo.weights``; with ``light``, without running the deferred package first."""
    if not light:
        load_package()
    from zoo import weights

    return weights


def _models(zw, pattern):
    """Manifest model names matching ``pattern`` (a name or an fnmatch pattern)."""
    names = sorted(zw.load_manifest())
    if pattern is None:
        return names
    chosen = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if not chosen:
        raise ValueError(
            f"no published weights for {pattern!r}; models with weights: {', '.join(names)}"
        )
    return chosen


def _file_records(zw, model_name, tag):
    """``[(file_key or None, record)]`` of one tag."""
    entry = zw.manifest_entry(model_name, tag)
    if "files" in entry:
        return list(entry["files"].items())
    return [(None, entry)]


def _records(zw, pattern):
    for model_name in _models(zw, pattern):
        for tag in zw.available_tags(model_name):
            for key, spec in _file_records(zw, model_name, tag):
                yield model_name, tag, key, spec


def cmd_list(args):
    """Prints a table: model, tag, file key, file, where it is found locally (or missing)."""
    zw = _zw(light=True)
    rows = []
    for model_name, tag, key, spec in _records(zw, args.name):
        local = zw.local_copy(spec)
        if local is None:
            where = "missing"
        elif spec.get("hash") and zw.is_verified(local, spec["hash"]):
            where = f"{local} (verified)"
        else:
            where = local
        rows.append((model_name, tag, key or "-", spec["file"], where))
    print(format_table(["MODEL", "TAG", "KEY", "FILE", "LOCAL"], rows))


def cmd_fetch(args):
    """Downloads every file of a tag (or ``--file KEY``) unless a good copy is local."""
    zw = _zw()
    records = _file_records(zw, args.name, args.tag)
    if args.file is not None:
        keys = [k for k, _ in records]
        if args.file not in keys:
            raise ValueError(
                f"{args.name}/{args.tag} has no file {args.file!r}; valid choices: "
                f"{', '.join(k for k in keys if k) or '(a single file: leave --file out)'}"
            )
        records = [(k, s) for k, s in records if k == args.file]
    for key, spec in records:
        path = zw.resolve_file(args.name, args.tag, key)
        print(f"{args.name} {args.tag} {key or '-'}: {path}")


def cmd_verify(args):
    """Hashes every local copy (ignoring the verified-files cache).

    Raises:
        ValueError: some file does not match (after every file was checked).
    """
    zw = _zw()
    ok, bad, unverified, missing = 0, [], 0, 0
    digests = {}
    for model_name, tag, key, spec in _records(zw, args.name):
        local = zw.local_copy(spec)
        label = f"{model_name} {tag} {key or '-'}"
        if local is None:
            missing += 1
            continue
        expected = spec.get("hash")
        if not expected:
            unverified += 1
            print(f"UNVERIFIED {label}: {local} (upstream publishes no hash)")
            continue
        algo, _, want = expected.partition(":")
        # A file shared by several tags (VGG16's for the FCNs) is read once.
        if (local, algo) not in digests:
            digests[(local, algo)] = zw.file_digest(local, algo)
        actual = digests[(local, algo)]
        if actual.startswith(want.lower()):
            ok += 1
            zw.remember_verified(local, expected)
            print(f"OK         {label}: {local}")
        else:
            if local not in bad:
                bad.append(local)
            print(f"MISMATCH   {label}: {local}: expected {expected}, has {algo}:{actual}")
    summary = f"{ok} ok, {len(bad)} mismatched, {unverified} unverified (no hash), {missing} not local"
    print(summary)
    if bad:
        raise ValueError(
            f"{len(bad)} local file(s) do not match the manifest: {', '.join(bad)}; "
            "delete them and run `zoo weights fetch NAME TAG`"
        )


def add_parsers(subparsers):
    """Adds ``weights list|fetch|verify`` to the ``zoo`` command's subparsers.

    Args:
        subparsers: the object ``argparse.ArgumentParser.add_subparsers`` returned.
    """
    p = subparsers.add_parser("weights", help="list, fetch and verify published weight files")
    sub = p.add_subparsers(dest="weights_command", required=True)

    s = sub.add_parser("list", help="every tag, its file, and where it is found locally (or missing)")
    s.add_argument("name", nargs="?", default=None, help="model name or pattern (default: all)")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("fetch", help="download a tag's file(s), hash-checked, into the Keras cache")
    s.add_argument("name")
    s.add_argument("tag")
    s.add_argument("--file", default=None, help="one file of a multi-file tag (e.g. torch, keras_notop)")
    s.set_defaults(func=cmd_fetch)

    s = sub.add_parser("verify", help="hash every local weights file against the manifest")
    s.add_argument("name", nargs="?", default=None, help="model name or pattern (default: all)")
    s.set_defaults(func=cmd_verify)
