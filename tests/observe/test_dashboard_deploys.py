"""The overview's deploy history (stack/deploy.py records each deploy in Supervisor.deploys): newest first,
every value escaped."""

from __future__ import annotations

from wsgistack.observe.dashboard.pages import overview_page


def test_the_history_lists_each_deploy_with_its_outcome():
    history = [
        {"app": "web", "generation": 3, "started": 1_700_000_100.0, "seconds": 4.2, "rollback": True,
         "outcome": "serving"},
        {"app": "web", "generation": 2, "started": 1_700_000_000.0, "seconds": 9.0, "rollback": False,
         "outcome": "failed: the smoke request answered 500 <b>"},
    ]
    page = overview_page("stack", [], "token", "", True, history).decode()
    table = page[page.index('id="deploy-history"'):]
    assert table.index("3 (rollback)") < table.index("<td>2</td>")
    assert "failed: the smoke request answered 500 &lt;b&gt;" in table
    assert "4.2 s" in table and "<td>serving</td>" in table


def test_no_history_no_table():
    assert 'id="deploy-history"' not in overview_page("stack", [], "token", "", True, []).decode()
