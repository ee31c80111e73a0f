"""The whole studio in a real browser, on real photos, as a user goes through it.

Each test is one step of the same story and builds on the one before (sign up,
import, label, train, deploy); after a failing step the later ones are skipped.
A screenshot ends every step, and any console error, page error or server error
seen on any page fails the step in which it happened.
"""

import re

import pytest
from playwright.sync_api import expect

from tests.base import real_photos

pytestmark = pytest.mark.e2e

PASSWORD = "correct-horse-battery-e2e"
PHOTOS_PER_LABEL = 7
# Training the small model on 14 photos takes seconds; the rest is the worker
# starting torch. Generous, so a busy machine does not fail the suite.
TRAINING_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def photos():
    ants = real_photos("ants", PHOTOS_PER_LABEL)
    bees = real_photos("bees", PHOTOS_PER_LABEL)
    assert len(ants) == len(bees) == PHOTOS_PER_LABEL, "hymenoptera photos missing"
    return {"ants": ants, "bees": bees}


def finish_step(flow, name: str):
    path = flow.screenshot(name)
    flow.assert_no_browser_errors(name)
    return path


def true_label(photos, file_name: str) -> str:
    for label, paths in photos.items():
        if any(path.name == file_name for path in paths):
            return label
    raise AssertionError(f"{file_name} is not one of the uploaded photos")


def label_counts(page) -> dict[str, int]:
    """The label panel's image count per label, as the page shows it."""
    counts = {}
    for row in page.locator("#label-panel .label-list li").all():
        name = row.locator(".label-name").inner_text().strip()
        counts[name] = int(row.locator(".count").inner_text().strip())
    return counts


def shortcut_key(page, label: str) -> str:
    button = page.locator("#focus-panel .assign", has_text=label).first
    return button.locator("kbd").inner_text().strip()


def open_project_section(flow, tab: str):
    page = flow.page
    page.goto(flow.state["project_url"])
    page.locator("nav.tabs").get_by_role("link", name=tab, exact=True).click()


def follow_run_to_its_metrics(flow):
    """Watch a run's progress bar fill, then open its metrics page."""
    page = flow.page
    expect(page).to_have_url(re.compile(r"/runs/\d+/(\?follow=1)?$"))
    run_url = page.url.split("?")[0]
    bar = page.locator("#run-status .progress")
    expect(bar).to_be_visible()
    flow.screenshot("training-progress")

    # When the run ends, the page shows the full bar and moves on by itself.
    expect(page).to_have_url(
        re.compile(r"/training-versions/\d+/metrics/"), timeout=TRAINING_TIMEOUT_MS
    )
    expect(page.locator(".metrics-title .badge")).to_have_text("Succeeded")
    flow.screenshot("training-finished")

    # Back on the finished run's page: full bar, and no more polling.
    polls = []

    def count_polls(request):
        if "/status/" in request.url:
            polls.append(request.url)

    page.on("request", count_polls)
    page.goto(run_url)
    expect(page.locator("#run-status .badge")).to_have_text("Succeeded")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    page.wait_for_timeout(2500)
    page.remove_listener("request", count_polls)
    assert not polls, f"the finished run's page still polls: {polls}"
    expect(page).to_have_url(run_url)
    page.go_back()
    expect(page).to_have_url(re.compile(r"/training-versions/\d+/metrics/"))


def test_it_leads_a_fresh_install_to_sign_up_and_creates_a_project(flow):
    page = flow.page
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/signup/$"))
    page.fill("#id_username", "ada")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/projects/$"))
    expect(page.locator(".topnav")).to_contain_text("ada")

    page.get_by_role("link", name="New project").click()
    page.fill("#id_name", "Ants and bees")
    page.fill("#id_description", "Tell ants from bees.")
    page.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(re.compile(r"/projects/\d+/$"))
    expect(page.locator(".project-header h1")).to_have_text("Ants and bees")
    flow.state["project_url"] = page.url
    finish_step(flow, "project-created")


def test_it_uploads_photos_through_the_form_with_a_report_per_file(flow, photos):
    page = flow.page
    open_project_section(flow, "Images")
    page.get_by_role("link", name="Upload images").first.click()
    files = [str(path) for paths in photos.values() for path in paths]
    # Choosing files starts the upload at once, in batches, with a progress bar.
    page.locator("#upload-files").set_input_files(files)
    expect(page.locator("#upload-bar")).to_be_visible()
    expect(page.locator("#upload-status")).to_have_text(
        "Done: 14 files processed.", timeout=60_000
    )
    expect(page.locator("#upload-bar")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#upload-counts")).to_have_text(
        "14 accepted · 0 duplicate · 0 rejected"
    )

    report = page.locator("#upload-report tbody tr")
    expect(report).to_have_count(14)
    expect(report.locator(".badge.accepted")).to_have_count(14)
    names = {
        text.strip() for text in report.locator("td:first-child").all_inner_texts()
    }
    assert names == {path.rsplit("/", 1)[-1] for path in files}
    flow.screenshot("upload-report")

    page.get_by_role("link", name="See the images").click()
    expect(page.locator("#gallery .tile")).to_have_count(14)
    finish_step(flow, "gallery")


def test_it_labels_in_the_grid_and_with_number_keys(flow, photos):
    page = flow.page
    open_project_section(flow, "Label")

    for name in ("ants", "bees"):
        page.fill("#new-label-name", name)
        page.locator(".label-create").get_by_role("button", name="Add").click()
        expect(page.locator("#label-panel .label-name", has_text=name)).to_be_visible()
    expect(page.locator("#selection .label-tile")).to_have_count(14)

    # The grid: pick 5 ants and then 3 bees by their file names, one request each,
    # and the page updates in place (the marker set here survives).
    page.evaluate("window.stillTheSamePage = true")
    for label, count in (("ants", 5), ("bees", 3)):
        for path in photos[label][:count]:
            page.locator("#selection .label-tile", has_text=path.name).click()
        expect(page.locator("#selected-count")).to_have_text(str(count))
        page.locator("#label-panel .assign", has_text=label).click()
        expect(page.locator("#selected-count")).to_have_text("0")
    expect(page.locator("#label-panel")).to_contain_text("6 unlabeled")
    assert label_counts(page) == {"ants": 5, "bees": 3}
    assert page.evaluate("window.stillTheSamePage") is True
    flow.screenshot("labeled-in-grid")

    # The keyboard view: the next unlabeled photo comes up by itself; label the
    # 2 remaining ants and 1 bee with number keys, skip the other bees.
    page.get_by_role("link", name="Focused view").click()
    expect(page.locator("#focus-panel figure")).to_be_visible()
    keys = {label: shortcut_key(page, label) for label in photos}
    wanted = {"ants": 2, "bees": 1}
    for _ in range(12):
        if not any(wanted.values()):
            break
        panel = page.locator("#focus-panel")
        shown = panel.get_attribute("data-image")
        name = panel.locator("figcaption strong").inner_text().strip()
        label = true_label(photos, name)
        if wanted[label]:
            page.keyboard.press(keys[label])
            wanted[label] -= 1
        else:
            page.keyboard.press("s")
        expect(panel).not_to_have_attribute("data-image", shown)
    assert not any(wanted.values()), f"keyboard labeling did not finish: {wanted}"
    counts = page.locator("#focus-panel .focus-labels .count")
    expect(counts).to_have_text(["7", "4"])
    finish_step(flow, "labeled-with-keys")


def test_it_disables_train_until_each_label_has_five_images(flow, photos):
    page = flow.page
    open_project_section(flow, "Train")
    train = page.get_by_role("button", name="Train", exact=True)
    expect(train).to_be_disabled()
    # The reason stands beside the button, exactly as the readiness rule words it.
    reasons = page.locator(".train-action #readiness .missing li")
    expect(reasons).to_have_text(["bees needs 1 more image"])
    flow.screenshot("train-disabled")

    # Label the last 3 bees in the grid with the number key of bees.
    open_project_section(flow, "Label")
    page.locator("#filters select[name=status]").select_option(label="Unlabeled")
    expect(page.locator("#selection .label-tile")).to_have_count(3)
    # The grid's keys are off while a form field has the focus, as they are
    # for a user who just picked the filter.
    page.locator(".selection-summary").click()
    page.keyboard.press("a")
    expect(page.locator("#selected-count")).to_have_text("3")
    bees_key = page.locator("#label-panel .assign", has_text="bees").locator("kbd")
    page.keyboard.press(bees_key.inner_text().strip())
    expect(page.locator("#readiness")).to_contain_text("Ready to train")
    assert label_counts(page) == {"ants": 7, "bees": 7}
    expect(page.locator("#selection .label-tile")).to_have_count(0)

    open_project_section(flow, "Train")
    expect(page.get_by_role("button", name="Train", exact=True)).to_be_enabled()
    expect(page.locator(".train-action #readiness")).to_have_text("✔ Ready to train.")
    finish_step(flow, "train-enabled")


def test_it_trains_with_the_defaults_and_reaches_the_metrics_page(flow):
    page = flow.page
    page.get_by_role("button", name="Train", exact=True).click()
    follow_run_to_its_metrics(flow)
    expect(page.locator(".metrics-title h2")).to_contain_text("V001")
    finish_step(flow, "trained-v001")


def test_it_shows_the_metrics_and_the_confusion_matrix(flow):
    page = flow.page
    for metric in ("accuracy", "precision", "recall", "f1"):
        value = page.locator(f"#metric-{metric}").inner_text().strip()
        assert 0 <= float(value) <= 1, f"{metric} shows {value!r}"
    for title in ("Accuracy", "Precision", "Recall", "F1"):
        expect(page.locator(".metric-tiles")).to_contain_text(title)

    matrix = page.locator("table.confusion-matrix")
    expect(matrix).to_be_visible()
    expect(matrix.locator("th.pred")).to_have_text(["ants", "bees"])
    cells = matrix.locator("tbody td.cell")
    expect(cells).to_have_count(4)
    counted = sum(int(text) for text in cells.all_inner_texts())
    validation_images = int(matrix.locator("tfoot td.total").last.inner_text())
    assert counted == validation_images > 0
    finish_step(flow, "metrics")


def test_it_trains_a_second_version_and_lists_both(flow):
    page = flow.page
    open_project_section(flow, "Train")
    page.get_by_role("button", name="Train", exact=True).click()
    follow_run_to_its_metrics(flow)
    expect(page.locator(".metrics-title h2")).to_contain_text("V002")

    open_project_section(flow, "Training versions")
    for version in ("V001", "V002"):
        row = page.locator(f"table.versions tr[data-version={version}]")
        expect(row).to_be_visible()
        expect(row.locator(".badge").first).to_have_text("Succeeded")
    finish_step(flow, "dashboard-two-versions")


def test_it_deploys_a_version_and_predicts_a_photo_on_its_test_page(flow):
    page = flow.page
    row = page.locator("table.versions tr[data-version=V002]")
    row.get_by_role("button", name="Deploy").click()
    expect(page).to_have_url(re.compile(r"/services/\d+/$"))
    # Deploying loads the model; the page updates by itself when it runs.
    expect(page.locator("#service-status .badge")).to_have_text(
        "Running", timeout=60_000
    )
    expect(page.locator("#test-file")).to_be_attached(timeout=30_000)
    flow.screenshot("service-running")

    unseen_bee = real_photos("bees", 1, split="val")[0]
    page.locator("#test-file").set_input_files(str(unseen_bee))
    predicted = page.locator("#test-label-name")
    expect(predicted).to_have_text("bees", timeout=60_000)
    expect(page.locator("#test-preview")).to_be_visible()

    rows = page.locator("#test-scores .row")
    expect(rows).to_have_count(2)
    scores = {}
    for text in rows.all_inner_texts():
        match = re.match(r"\s*(\w+)\s+([\d.]+)\s*%", text)
        assert match, f"score row reads {text!r}"
        scores[match[1]] = float(match[2])
    assert set(scores) == {"ants", "bees"}
    assert abs(sum(scores.values()) - 100) < 0.5
    assert max(scores, key=scores.get) == "bees"
    flow.screenshot("prediction")

    # The service counts what it answered.
    page.reload()
    expect(page.locator("#prediction-count")).to_have_text("1")
    finish_step(flow, "prediction-counted")


def test_it_logged_no_browser_error_on_any_page(flow):
    visited = {re.sub(r"\?.*", "", url) for url in flow.visited}
    assert len(visited) >= 8, f"the flow visited too few pages: {sorted(visited)}"
    flow.assert_no_browser_errors("the end of the flow")
