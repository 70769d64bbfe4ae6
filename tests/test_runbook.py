"""environment.runbook: the extractor finds every runnable block of a runbook; the runner fails naming it.

No database here: the broken commands fail before they would connect, so these tests stay fast.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from bridge.redact import REDACTED, redact_values
from chaos.waiting import wait_until
from environment.runbook import (
    PROJECT_ROOT,
    Runbook,
    RunbookCommandFailed,
    RunbookEnvError,
    RunbookFormatError,
    RunbookRunner,
    main,
    run_block,
    secrets_of,
    slug,
)

RUNBOOK = PROJECT_ROOT / "docs" / "EMERGENCY_RECOVERY_RUNBOOK.md"
REQUIRED_SECTIONS = (
    "detect",
    "decide",
    "certificate-and-credential-failures",
    "roll-back",
    "restart-on-files",
    "way-back",
    "restore-from-backup",
    "who-does-what",
)
DUMMY_DSN = "host=127.0.0.1 port=1 dbname=auth user=bridge_app password=hunter2-secret connect_timeout=2"

SAMPLE = """\
# Title

<a id="first"></a>
## First section

```sh runbook id=one
echo one "$FOO"
```

Text with an inline `python -m bridge health` that is not a block.

````markdown
```sh runbook id=not-a-block
echo inside a longer fence: an example, not a command
```
````

### A sub-heading stays in its section

```bash runbook id=two exit=0,3
: "${BAR:?set BAR}"
baz=1
echo "$baz ${QUX:-default} ${BAR}"
```

## Second Section, with Punctuation!

~~~sh runbook id=three
LOCAL_ONE=x
echo "$LOCAL_ONE"
~~~

```sh
echo an untagged shell block
```

```js
console.log('not shell')
```
"""


# -- extraction -------------------------------------------------------------------------------------


def test_extractor_finds_each_block_with_its_section_line_and_script() -> None:
    rb = Runbook.parse(SAMPLE, source="sample.md")
    assert [b.id for b in rb.blocks] == ["one", "two", "three"]
    one, two, three = rb.blocks
    assert (one.section, one.line, one.script) == ("first", 6, 'echo one "$FOO"\n')
    assert (two.section, two.heading, two.language) == ("first", "A sub-heading stays in its section", "bash")
    assert two.exits == frozenset({0, 3})
    assert three.section == "second-section-with-punctuation" and three.line == 28
    assert one.where == "sample.md:6 #first"
    assert rb.sections == ("title", "first", "second-section-with-punctuation")
    assert [(u.line, u.section) for u in rb.unrun] == [(33, "second-section-with-punctuation")]


def test_inputs_are_upper_case_variables_without_default_not_set_by_the_block() -> None:
    one, two, three = Runbook.parse(SAMPLE).blocks
    assert one.inputs == {"FOO"}
    assert two.inputs == {"BAR"}  # ${QUX:-default} has a default, $baz is the block's own
    assert three.inputs == frozenset()  # LOCAL_ONE is assigned in the block


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ("sh runbook", "needs id=NAME"),
        ("sh runbook id=Bad_Id", "needs id=NAME"),
        ("sh runbook id=x exit=zero", "comma-separated integers"),
        ("sh runbook id=x timeout=3", "unknown runbook block attribute"),
    ],
    ids=["no-id", "bad-id", "bad-exit", "unknown-attribute"],
)
def test_malformed_block_is_refused_naming_its_line(info: str, message: str) -> None:
    text = f"## S\n\n```{info}\necho x\n```\n"
    with pytest.raises(RunbookFormatError, match=message) as caught:
        Runbook.parse(text, source="bad.md")
    assert caught.value.line == 3 and str(caught.value).startswith("bad.md:3:")


def test_repeated_block_id_is_refused() -> None:
    text = "## S\n\n```sh runbook id=x\necho 1\n```\n\n```sh runbook id=x\necho 2\n```\n"
    with pytest.raises(RunbookFormatError, match="used twice"):
        Runbook.parse(text)


def test_slug_matches_github_anchors() -> None:
    assert slug("Roll back") == "roll-back"
    assert slug("Restore from backup") == "restore-from-backup"
    assert slug("Before you start: the variables") == "before-you-start-the-variables"


# -- the real runbook -------------------------------------------------------------------------------


def test_runbook_has_every_required_section_and_every_shell_command_is_runnable() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    rb = Runbook.load(RUNBOOK)
    assert rb.source == "docs/EMERGENCY_RECOVERY_RUNBOOK.md"
    assert set(REQUIRED_SECTIONS) <= set(rb.sections), rb.sections
    for section in REQUIRED_SECTIONS:
        assert f'<a id="{section}"></a>' in text, f"no stable anchor for #{section}"
    # Counted independently of the parser: every opening fence tagged runbook is one extracted block.
    tagged = re.findall(
        r"^(?:`{3,}|~{3,})\s*(?:sh|bash|shell|console)\b[^\n]*\brunbook\b", text, re.MULTILINE
    )
    assert len(tagged) == len(rb.blocks) > 0
    assert rb.unrun == (), f"shell blocks the suite would never run: {rb.unrun}"
    assert {b.section for b in rb.blocks} <= set(REQUIRED_SECTIONS)
    for section in ("detect", "decide", "roll-back", "restart-on-files", "way-back", "restore-from-backup"):
        assert rb.in_sections(section), f"section #{section} has no runnable command"


# -- running ----------------------------------------------------------------------------------------


def _broken_copy(tmp_path: Path) -> Runbook:
    """A copy of the real runbook in which the export command has a typo."""
    text = RUNBOOK.read_text(encoding="utf-8")
    original = Runbook.parse(text).block("export").script
    broken = original.replace("rollback export", "rollback exprot")
    assert broken != original
    copy = tmp_path / "RUNBOOK-copy.md"
    copy.write_text(text.replace(original, broken), encoding="utf-8")
    return Runbook.load(copy)


def test_broken_command_in_a_runbook_copy_fails_naming_the_block(tmp_path: Path) -> None:
    rb = _broken_copy(tmp_path)
    runner = RunbookRunner(rb, {"BRIDGE_DSN": DUMMY_DSN, "EXPORT_DIR": str(tmp_path / "export")})
    with pytest.raises(RunbookCommandFailed) as caught:
        runner.run("export")
    message = str(caught.value)
    block = rb.block("export")
    assert "runbook block 'export'" in message and f":{block.line} #roll-back" in message
    assert "exited 2; the runbook promises exit 0|3" in message
    assert "invalid choice: 'exprot'" in message  # the command's own complaint comes with it
    assert caught.value.returncode == 2 and caught.value.expected == [0, 3]
    assert "hunter2-secret" not in message
    assert [r.block.id for r in runner.runs] == ["export"]  # the failed run is kept as evidence
    assert not (tmp_path / "export").exists()


def test_the_unbroken_block_runs_and_reaches_the_database(tmp_path: Path) -> None:
    """The same block from the real runbook gets past argument parsing: it fails only on the dead DSN."""
    block = Runbook.load(RUNBOOK).block("export")
    with pytest.raises(RunbookCommandFailed) as caught:
        run_block(block, {"BRIDGE_DSN": DUMMY_DSN, "EXPORT_DIR": str(tmp_path / "export")})
    assert caught.value.returncode == 2
    assert "127.0.0.1:1/auth unavailable" in caught.value.run.stderr
    assert "hunter2-secret" not in caught.value.run.stderr + str(caught.value)


def test_missing_input_is_named_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    block = Runbook.parse(f'## S\n\n```sh runbook id=x\ntouch {marker}\necho "$EXPORT_DIR"\n```\n').block("x")
    with pytest.raises(RunbookEnvError, match=r"'x' .* needs \$EXPORT_DIR") as caught:
        run_block(block, {"BRIDGE_DSN": DUMMY_DSN})
    assert caught.value.missing == ["EXPORT_DIR"]
    assert not marker.exists()


def test_block_runs_in_a_clean_environment_with_the_suites_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_DSN", "from-the-outer-environment")
    script = 'echo "dsn=${BRIDGE_DSN:-unset}"\npython -c "import sys; print(sys.prefix)"\n'
    text = f"## S\n\n```sh runbook id=x\n{script}```\n"
    run = run_block(Runbook.parse(text).block("x"), {})
    lines = run.stdout.splitlines()
    assert lines[0] == "dsn=unset"
    assert Path(lines[1]) == Path(sys.prefix)


def test_unpromised_exit_status_fails_and_a_promised_one_passes() -> None:
    text = (
        "## S\n\n```sh runbook id=three exit=3\nexit 3\n```\n\n"
        "```sh runbook id=pipe\nfalse | cat\necho unreachable\n```\n"
    )
    rb = Runbook.parse(text)
    assert run_block(rb.block("three"), {}).returncode == 3
    with pytest.raises(RunbookCommandFailed, match="exited 1; the runbook promises exit 0") as caught:
        run_block(rb.block("pipe"), {})  # pipefail and -e: a failure inside a pipeline stops the block
    assert "unreachable" not in caught.value.run.stdout


def test_block_past_its_deadline_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    text = f"## S\n\n```sh runbook id=hang\nsleep 60 &\necho $! > {pidfile}\nwait\n```\n"
    with pytest.raises(RunbookCommandFailed, match=r"did not finish within 0\.5 s and was killed"):
        run_block(Runbook.parse(text).block("hang"), {}, timeout_s=0.5)
    child = int(pidfile.read_text())
    wait_until(lambda: not _alive(child), timeout=5, what=f"the block's child {child} to be gone")


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_command_line_lists_blocks_and_runs_them_with_the_operators_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "RUNBOOK.md"
    copy.write_text(
        '## Roll back\n\n```sh runbook id=hello\necho "hello $WHO"\n```\n\n'
        "```sh runbook id=partial exit=3\nexit 1\n```\n\n"
        "```sh runbook id=never\necho never\n```\n"
    )
    assert main(["--file", str(copy), "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split()[:4] == ["hello", "#roll-back", "exit", "0"]
    assert len(listed) == 3
    assert listed[0].endswith("needs WHO")

    monkeypatch.setenv("WHO", "operator")
    assert main(["--file", str(copy), "run", "hello", "partial", "never"]) == 1
    out, err = capsys.readouterr()
    assert out == "hello operator\n"  # 'never' was not run: the runner stops at the first failure
    assert "FAILED: runbook block 'partial'" in err and "exited 1; the runbook promises exit 3" in err
    assert main(["--file", str(copy), "run", "nope"]) == 2
    assert "has no runbook block 'nope'" in capsys.readouterr().err


def test_secrets_are_found_in_dsns_and_secret_variables_and_redacted() -> None:
    env = {
        "BRIDGE_DSN": DUMMY_DSN,
        "URI": "postgresql://u:s3cr%40t@db:5432/auth",
        "QUOTED": "host=x password='it\\'s long' port=5432",
        "BRIDGE_BACKUP_A_SECRET_ACCESS_KEY": "AKIASECRETVALUE",
        "EXPORT_DIR": "/tmp/export",
    }
    secrets = secrets_of(env)
    assert {"hunter2-secret", "s3cr%40t", "it\\'s long", "AKIASECRETVALUE"} <= set(secrets)
    assert "/tmp/export" not in secrets
    text = f"failed for {DUMMY_DSN} and postgresql://u:s3cr%40t@db/auth with AKIASECRETVALUE"
    cleaned = redact_values(text, secrets)
    assert "hunter2" not in cleaned and "s3cr" not in cleaned and "AKIA" not in cleaned
    assert cleaned.count(REDACTED) == 3
