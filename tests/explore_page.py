"""The explorer's page driven through Selenium for tests/test_explore.py: each method does what
a user would (click, type, choose) and checks what the page then shows. Every view is saved as
a screenshot in the test's folder."""

from __future__ import annotations

import time
from pathlib import Path

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT = 60  # seconds: a busy 2-core machine


class ExplorerPage:
    def __init__(self, driver, base: str, folder: Path):
        self.driver, self.base, self.folder = driver, base, Path(folder)

    # -- navigation -----------------------------------------------------------------------------
    def open(self, fragment: str, view: str) -> None:
        url = f"{self.base}/#{fragment}"
        if self.driver.current_url == url:  # the same address fires no hashchange: load it again
            self.driver.refresh()
        else:
            if self.driver.current_url.startswith(self.base):  # a change of fragment only: the same document
                self.driver.execute_script("delete document.body.dataset.ready")
            self.driver.get(url)
        self.until(lambda d: d.execute_script("return document.body.dataset.ready") == view, f"the {view} view")

    def until(self, condition, what: str):
        # Views redraw their elements after each answer: a reference may go stale between two looks.
        waiting = WebDriverWait(self.driver, WAIT, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
        return waiting.until(condition, f"waiting for {what}")

    def find(self, selector: str):
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def finds(self, selector: str):
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def images_loaded(self, selector: str) -> bool:
        return self.driver.execute_script(
            "const images = [...document.querySelectorAll(arguments[0])];"
            "return images.length > 0 && images.every(i => i.complete && i.naturalWidth > 0);", selector)

    def screenshot(self, view: str) -> None:
        time.sleep(0.3)  # the last images paint
        self.driver.save_screenshot(str(self.folder / f"explorer-{view}.png"))

    def error_text(self) -> str:
        hidden = self.find("#error").get_attribute("hidden") is not None
        return "" if hidden else self.find("#error-text").text

    # -- views ----------------------------------------------------------------------------------
    def check_components(self, frame) -> None:
        self.open("components", "components")
        rows = self.finds("table.components tbody tr")
        sizes = frame["component"].value_counts().sort_index()
        assert [int(row.get_attribute("data-component")) for row in rows] == sizes.index.tolist()
        assert [int(row.find_element(By.CSS_SELECTOR, "td.size").text.replace(",", "")) for row in rows] == sizes.tolist()
        self.until(lambda d: self.images_loaded("td.top img"), "the most probable members' thumbnails")
        assert len(self.finds("td.top img")) == 8 * len(rows)
        self.screenshot("components")

    def check_members_sorted_by_mse(self, frame, component: int) -> None:
        self.open("components", "components")
        self.find(f'tr[data-component="{component}"] a[href="#members/{component}"]').click()
        self.until(lambda d: d.find_element(By.ID, "grid").get_attribute("data-loaded") == f"{component}:gamma:desc:0", "members by gamma")
        Select(self.find("#sort")).select_by_value("mse")
        self.until(lambda d: d.find_element(By.ID, "grid").get_attribute("data-loaded") == f"{component}:mse:desc:0", "members by MSE")
        shown = [card.get_attribute("data-id") for card in self.finds("#grid figure.card")]
        members = frame[frame["component"] == component].sort_values("mse", ascending=False, kind="stable")
        assert shown == members["id_str"].head(60).tolist()
        assert f"of {-(-len(members) // 60)} · {len(members)} members" in self.find("#page-info").text
        self.until(lambda d: self.images_loaded("#grid img"), "the member thumbnails")
        self.screenshot("members")
        self.find("#next").click()
        self.until(lambda d: d.find_element(By.ID, "grid").get_attribute("data-loaded") == f"{component}:mse:desc:1", "page 2")
        assert [card.get_attribute("data-id") for card in self.finds("#grid figure.card")] == members["id_str"].iloc[60:120].tolist()

    def check_map_click(self) -> None:
        self.find('nav a[data-view="map"]').click()
        canvas = self.until(lambda d: d.find_element(By.ID, "map-canvas") if d.find_element(By.ID, "map-canvas")
                            .get_attribute("data-ready") == "true" else None, "the latent map")
        target = self.driver.execute_script("return window.explorerMap.ids()[17]")
        x, y = self.driver.execute_script("return window.explorerMap.pixelOf(arguments[0])", target)
        size = canvas.size
        ActionChains(self.driver).move_to_element_with_offset(canvas, x - size["width"] / 2, y - size["height"] / 2).click().perform()
        chosen = self.until(lambda d: d.find_element(By.ID, "map-object").get_attribute("data-id"), "the clicked galaxy")
        cx, cy = self.driver.execute_script("return window.explorerMap.pixelOf(arguments[0])", chosen)
        assert (cx - x) ** 2 + (cy - y) ** 2 <= 64, (target, chosen)  # that point, or one drawn on top of it
        self.until(lambda d: self.images_loaded("#map-object img"), "its image and reconstruction")
        assert len(self.finds("#map-object img")) == 2 and len(self.finds("#map-object .gamma-row")) == 3
        self.screenshot("map")

    def check_samples(self, component: int) -> None:
        self.open(f"samples/{component}", "samples")
        self.until(lambda d: self.images_loaded("#samples-image"), "the synthetic samples")
        first = self.find("#samples-image").get_attribute("src")
        self.find("#new-samples").click()
        assert self.find("#samples-image").get_attribute("src") != first and "seed=1" in self.find("#samples-image").get_attribute("src")
        self.until(lambda d: self.images_loaded("#samples-image"), "new samples")
        top = self.driver.execute_script("return fetch('/api/components').then(r => r.json()).then(c => c[arguments[0]].top)", component)
        assert [link.get_attribute("title") for link in self.finds("#view-samples .strip a")] == top
        self.until(lambda d: self.images_loaded("#view-samples .strip img"), "the real members beside them")
        self.screenshot("samples")
        self.open("samples/7", "samples")
        self.until(lambda d: self.error_text() == "component 7: the model has components 0..2", "the unknown component's message")

    # -- annotations ----------------------------------------------------------------------------
    def name_component(self, component: int, name: str) -> None:
        self.open("components", "components")
        field = self.find(f'input.name[data-component="{component}"]')
        field.clear()
        field.send_keys(name, Keys.ENTER)
        row = self.find(f'tr[data-component="{component}"]')
        self.until(lambda d: "saved" in row.find_element(By.CSS_SELECTOR, ".saved").text, "the name to be saved")

    def flag_object(self, id_str: str, flag: str, note: str) -> None:
        self.open(f"object/{id_str}", "object")
        self.until(lambda d: self.images_loaded("#view-object .pictures img"), "the object's images")
        self.find("#object-note").send_keys(note)
        self.find("#save-note").click()
        self.until(lambda d: d.find_element(By.ID, "annotation-status").text.startswith("saved"), "the note to be saved")
        self.find(f'button[data-flag="{flag}"]').click()
        self.until(lambda d: "active" in d.find_element(By.CSS_SELECTOR, f'button[data-flag="{flag}"]').get_attribute("class"),
                   "the flag to be saved")
        assert len(self.finds("#view-object .gamma-row")) == 3
        self.screenshot("object")

    def check_unknown_id(self, id_str: str) -> None:
        self.open(f"object/{id_str}", "object")
        assert self.error_text() == f"id '{id_str}': not in the catalogue predictions"

    def check_kept(self, component: int, name: str, id_str: str, flag: str, note: str) -> None:
        self.open("components", "components")
        assert self.find(f'input.name[data-component="{component}"]').get_attribute("value") == name
        self.open(f"object/{id_str}", "object")
        assert "active" in self.find(f'button[data-flag="{flag}"]').get_attribute("class")
        assert self.find("#object-note").get_attribute("value") == note
        component_of_flagged = self.driver.execute_script(
            "return fetch('/api/object?id=' + arguments[0]).then(r => r.json()).then(o => o.component)", id_str)
        self.open(f"members/{component_of_flagged}", "members")
        Select(self.find("#flag-filter")).select_by_value("any")
        self.until(lambda d: d.find_element(By.ID, "page-info").text.startswith("page 1 of 1 · 1 members"), "the flagged member")
        cards = self.finds("#grid figure.card")
        assert [c.get_attribute("data-id") for c in cards] == [id_str] and "flagged" in cards[0].get_attribute("class")
        assert cards[0].find_element(By.CSS_SELECTOR, ".flag").text == flag

    def export(self, output_format: str, path: Path) -> Path:
        before = path.stat().st_mtime_ns if path.exists() else None
        self.find(f'#export button[data-format="{output_format}"]').click()
        self.until(lambda d: d.find_element(By.ID, "notice").text.startswith("exported:"), f"the {output_format} export")
        assert path.exists() and path.stat().st_mtime_ns != before and path.name in self.find("#notice").text
        link = self.find("#notice a#download").get_attribute("href")
        size = self.driver.execute_script("return fetch(arguments[0]).then(r => r.arrayBuffer()).then(b => b.byteLength)", link)
        assert link.endswith(f"/api/export/{output_format}") and size == path.stat().st_size
        return path

    def check_no_script_errors(self) -> None:
        """Nothing failed in the page but the 404 the unknown id was meant to give."""
        entries = [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        unexpected = [e["message"] for e in entries if "404" not in e["message"]]
        assert unexpected == [], unexpected
