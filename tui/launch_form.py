"""The launch form: pick a recipe; one field per typed parameter (checkbox, select, or an input
checked as you type with the reason beside it); batch size, mixed precision, gradient
checkpointing and device first; the exact command line shown; Enter launches, Escape cancels;
"save as defaults" writes config.toml keeping the rest of the file."""

from __future__ import annotations

import shlex

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.message import Message
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from rich.text import Text

from urbanrun.engine.diagnosis.advisor import MARGIN, estimate_gb, memory_model
from urbanrun.engine.runs.backends import BACKENDS
from urbanrun.engine.core.config import Config, Recipe, load_config, save_recipe_defaults
from urbanrun.engine.core.errors import CommandFailed, UserError
from urbanrun.engine.core.params import Param, ParamError

PROMINENT = ("batch_size", "amp", "grad_checkpoint", "device")


class FormSelect(Select, inherit_bindings=False):
    """A select that opens with space or ↓ (Enter launches, as in every field of the form)."""

    BINDINGS = [Binding("space,down", "show_overlay", "open", show=False)]


class FormCheckbox(Checkbox, inherit_bindings=False):
    """A checkbox that toggles with space (Enter launches, as in every field of the form)."""

    BINDINGS = [Binding("space", "toggle_button", "toggle", show=False)]


def ordered(recipe: Recipe) -> list[Param]:
    first = [p for name in PROMINENT for p in recipe.params if p.name == name]
    return first + [p for p in recipe.params if p not in first]


class MemoryModelRead(Message):
    """The memory model of a recipe, fitted in a worker from its earlier runs' records and metrics."""

    def __init__(self, recipe: str, model) -> None:
        super().__init__()
        self.recipe, self.model = recipe, model


class DefaultsSaved(Message):
    """config.toml saved and read back (config None: it was not, and why)."""

    def __init__(self, config, note: str) -> None:
        super().__init__()
        self.config, self.note = config, note


SHORT_ROWS = 32


class LaunchForm(ModalScreen):
    """Dismisses with {"recipe", "values"} or None."""

    BINDINGS = [Binding("escape", "cancel", "cancel", tooltip="close the form, launch nothing"),
                Binding("ctrl+s", "save_defaults", "save as defaults",
                        tooltip="save these values as the recipe's defaults in config.toml (asks first)"),
                Binding("enter", "launch", "launch", show=False)]

    def __init__(self, config: Config, recipe: str | None = None, store=None, gpus: list | None = None):
        super().__init__()
        self.config = config
        self.store = store  # earlier runs, for the memory estimate
        self.gpus = gpus or []
        self._fit_warned = False
        self._models: dict[str, tuple | None] = {}
        self.recipe_name = recipe if recipe in config.recipes else next(iter(config.recipes), None)
        self.errors: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="launch-dialog"):
            yield Label("Launch a run", id="launch-title")
            yield FormSelect([(n, n) for n in self.config.recipes], value=self.recipe_name, allow_blank=False,
                             id="recipe")
            yield Static(id="recipe-help")
            with Horizontal(id="backend-row"):
                yield FormSelect([(b, b) for b in BACKENDS], value=self.config.recipes[self.recipe_name].backend
                             if self.recipe_name else "local", allow_blank=False, id="backend")
                yield Input(placeholder="backend options: nproc_per_node=2 | partition=gpu, gres=gpu:1, time=4:00:00",
                            id="backend-opts")
                queued = self.config.recipes[self.recipe_name].queue if self.recipe_name else False
                yield FormCheckbox("queue", value=queued, id="queue")
                # takes text only while queue is ticked: typed into unticked, it was ignored without a word
                yield Input(placeholder="GB (est.)", id="queue-mem", disabled=not queued)
            fields = VerticalScroll(id="fields")
            fields.can_focus = False  # Tab goes from the recipe straight to the first field
            yield fields
            yield Static(id="memory")
            yield Static(id="command")
            with Horizontal(id="launch-buttons"):
                yield Button("Launch  ⏎", variant="success", id="launch")
                yield Button("Save as defaults  ^s", id="save")
                yield Button("Cancel  esc", id="cancel")

    async def on_mount(self) -> None:
        await self._build_fields()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """Below SHORT_ROWS the fields, selects and buttons lose their borders and the dialog its
        margins: at 24 rows the bordered form left the parameters one line, the typed value unseen."""
        short = self.app.size.height < SHORT_ROWS
        self.set_class(short, "-short")
        for widget in self.query("Input, Select, Button"):
            widget.compact = short

    @property
    def recipe(self) -> Recipe:
        return self.config.recipes[self.recipe_name]

    async def _build_fields(self) -> None:
        box = self.query_one("#fields", VerticalScroll)
        await box.remove_children()
        self.errors = {}
        self.query_one("#recipe-help", Static).update(self.recipe.description)
        rows = []
        for p in ordered(self.recipe):
            hint = f"{p.name}  ({p.describe()})" + (f" — {p.help}" if p.help else "")
            default = p.default
            if p.type == "bool":
                widget = FormCheckbox(p.name, value=bool(default), id=f"f-{p.name}")
            elif p.type == "choice":
                widget = FormSelect([(str(c), c) for c in p.choices],
                                    value=default if default is not None else p.choices[0],
                                    allow_blank=False, id=f"f-{p.name}")
            else:
                text = "" if default is None else " ".join(p.format(default))
                widget = Input(value=text, placeholder="unset" if default is None else "", id=f"f-{p.name}")
            rows.append(Vertical(Label(hint, classes="field-hint"), widget,
                                 Label("", id=f"err-{p.name}", classes="field-error"), classes="field"))
        await box.mount_all(rows)
        self._fit()
        self._update_command()

    async def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "recipe" and event.value != self.recipe_name:
            self.recipe_name = event.value
            self.query_one("#backend", Select).value = self.recipe.backend
            self.query_one("#queue", Checkbox).value = self.recipe.queue
            await self._build_fields()
        else:
            self._update_command()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._update_command()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id == "queue":
            self.query_one("#queue-mem", Input).disabled = not event.value
        self._update_command()

    def backend(self) -> tuple[str, dict]:
        """The chosen backend and its options (`key=value` pairs separated by commas)."""
        options = {}
        for item in self.query_one("#backend-opts", Input).value.split(","):
            key, eq, value = item.partition("=")
            if eq and key.strip():
                options[key.strip()] = value.strip()
        return self.query_one("#backend", Select).value, options

    def values(self) -> dict:
        """Typed values of every field; fields that do not parse are in self.errors instead."""
        out, self.errors = {}, {}
        for p in self.recipe.params:
            widget = self.query_one(f"#f-{p.name}")
            raw = widget.value
            if isinstance(widget, Input) and not raw.strip() and p.default is not None and p.type != "string":
                self.errors[p.name] = f"needs a value (default {' '.join(p.format(p.default))})"
                continue
            try:
                out[p.name] = p.parse(raw) if not isinstance(widget, Checkbox) else bool(raw)
            except ParamError as exc:
                self.errors[p.name] = str(exc)
        return out

    def _update_command(self) -> None:
        values = self.values()
        for p in self.recipe.params:
            label = self.query(f"#err-{p.name}")
            if label:
                label.first().update(f"✖ {self.errors[p.name]}" if p.name in self.errors else "")
            for field in self.query(f"#f-{p.name}"):
                field.set_class(p.name in self.errors, "invalid")
        self._update_memory(values)
        command = self.query_one("#command", Static)
        if self.errors:
            command.update(Text(f"fix {self.error_sentence()} to launch", style="bold red"))
            return
        argv = self.recipe.argv(values, self.config.context("runs/<new run>"))
        backend, options = self.backend()
        prefix = {"torchrun": f"torchrun --nproc-per-node={options.get('nproc_per_node', '…')} … ",
                  "slurm": "sbatch runs/<new run>/job.sbatch  →  exec "}.get(backend, "")
        command.update("$ " + prefix + shlex.join(argv))

    def _update_memory(self, values: dict) -> bool:
        """Show the memory estimate; True when it will not fit the GPU it would run on."""
        box = self.query_one("#memory", Static)
        if self.recipe_name not in self._models:  # earlier runs are read once per recipe, in a worker
            self._models[self.recipe_name] = None
            if self.store is not None:
                self._read_memory_model(self.recipe_name)
        estimate = estimate_gb(self._models[self.recipe_name], values)
        if estimate is None:
            box.update("")
            return False
        need, basis = estimate
        free = [((g.get("mem_free") or 0) / 1e9, g) for g in self.gpus if not g.get("lost")]
        if not free:
            box.update(f"GPU memory ≈ {need:.1f} GB ({basis}); no GPU here to check it against")
            return False
        best, gpu = max(free, key=lambda f: f[0])
        too_big = need > best * (1 - MARGIN)
        box.update(Text(f"GPU memory ≈ {need:.1f} GB ({basis}); {best:.1f} GB free on GPU {gpu.get('index')} "
                        + ("— will NOT fit: smaller batch, mixed precision or checkpointing" if too_big else "— fits"),
                        style="bold red" if too_big else "green"))
        return too_big

    @work(thread=True, group="memory-model")
    def _read_memory_model(self, name: str) -> None:
        self.post_message(MemoryModelRead(name, memory_model(self.config.recipes[name], self.store)))

    def on_memory_model_read(self, message: MemoryModelRead) -> None:
        self._models[message.recipe] = message.model
        if message.recipe == self.recipe_name:
            self._update_command()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        {"launch": self.action_launch, "save": self.action_save_defaults, "cancel": self.action_cancel}[event.button.id]()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_launch()

    def error_sentence(self) -> str:
        """The invalid fields by name, with their reasons."""
        return "; ".join(f"{name}: {why}" for name, why in self.errors.items())

    def _focus_first_error(self) -> None:
        first = next(iter(self.errors), None)
        if first:
            self.query_one(f"#f-{first}").focus()

    def action_launch(self) -> None:
        values = self.values()
        if self.errors:
            self._update_command()
            self._focus_first_error()
            self.notify(f"not launched: fix {self.error_sentence()}", severity="error", timeout=10)
            return
        queue = self.queue_request()
        if queue is False:
            return
        if queue is None and self._update_memory(values) and not self._fit_warned:
            self._fit_warned = True
            self.notify("this will not fit the GPU's free memory: press Enter again to launch anyway, "
                        "or tick queue to start it when the memory is free", severity="warning")
            return
        backend, options = self.backend()
        self.dismiss({"recipe": self.recipe_name, "values": values, "backend": backend, "options": options,
                      "queue": queue})

    def queue_request(self) -> dict | None | bool:
        """{"mem_gb": GB or None (the estimate)} when queue is ticked, None when not, False (and the
        field focused, with a sentence) when its memory is not a number of GB > 0."""
        if not self.query_one("#queue", Checkbox).value:
            return None
        field = self.query_one("#queue-mem", Input)
        field.disabled = False  # ticked: the field counts (its Changed message may not be handled yet)
        text = field.value.strip()
        if not text:
            return {}
        try:
            mem = float(text)
        except ValueError:
            mem = float("nan")
        if not mem > 0 or mem == float("inf"):
            field.focus()
            self.notify(f"not launched: the queue's memory must be GB > 0 (e.g. 15), not '{text}'", severity="error",
                        timeout=10)
            return False
        return {"mem_gb": mem}

    def action_save_defaults(self) -> None:
        values = self.values()
        if self.errors:
            self._update_command()
            self._focus_first_error()
            self.notify(f"nothing was saved: fix {self.error_sentence()}", severity="error", timeout=10)
            return
        from .dialogs import ConfirmScreen

        changed = {k: v for k, v in values.items() if v != self.recipe.param(k).default}
        what = ", ".join(f"{k} = {v!r}" for k, v in changed.items()) or "the current values (no change)"
        self.app.push_screen(ConfirmScreen(f"Save as the defaults of '{self.recipe_name}' in {self.config.editable_path}?",
                                           f"{what}\nComments and layout of the file are kept."),
                             lambda yes: yes and self._save_defaults(values))

    @work(thread=True, group="save-defaults")
    def _save_defaults(self, values: dict) -> None:
        """config.toml is written and read back here, in a worker; the result comes as a message."""
        try:
            path = save_recipe_defaults(self.config, self.recipe_name, values)
            config = load_config(path)
            source = getattr(self.app, "source", None)
            if hasattr(source, "reload_config"):
                config = source.reload_config()  # the engine launches with the new defaults
        except (UserError, CommandFailed, OSError) as exc:  # a full disk is a CommandFailed
            self.post_message(DefaultsSaved(None, str(exc)))
            return
        self.post_message(DefaultsSaved(config, f"saved as the defaults of '{self.recipe_name}' in {path}"))

    def on_defaults_saved(self, message: DefaultsSaved) -> None:
        if message.config is None:
            self.notify(message.note, severity="error")
            return
        self.config = message.config
        if hasattr(self.app, "config"):
            self.app.config = message.config
        self.notify(message.note)

    def action_cancel(self) -> None:
        self.dismiss(None)


def launch_keys() -> list[Binding]:
    """The keys the form's fields take (for the help screen)."""
    return [Binding("enter", "launch", "launch", tooltip="launch, from any field (the select opens with space or ↓)"),
            Binding("tab", "focus_next", "next field", tooltip="next field"),
            Binding("space", "toggle", "toggle", tooltip="tick a checkbox; open a select")]
