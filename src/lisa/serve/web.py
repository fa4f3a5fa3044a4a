"""`lisa serve web`: the Gradio demo, a second front end to the same model worker as the API.

Upload or pick an example image, ask; the answer joins the chat, the overlay shows each mask
in its own colour (a checkbox per mask turns it on and off), follow-up questions keep the
conversation (the image's embedding comes from the pipeline's cache), and the masks can be
downloaded as PNGs and as COCO RLE JSON.

Privacy: Gradio keeps uploads and downloads in a cache folder; it is a private folder in
RAM (/dev/shm where there is one), deleted when the server stops. Nothing is logged unless
--log-requests.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np

from lisa.errors import LisaError
from lisa.inference.render import PALETTE, draw_overlay, mask_records
from lisa.serve.payload import png_bytes
from lisa.serve.worker import QueueFull, WorkerPool

log = logging.getLogger("lisa.serve")
COLOUR_NAMES = ["red", "blue", "green", "orange", "purple", "cyan", "magenta", "lime", "teal", "brown"]  # PALETTE
assert len(COLOUR_NAMES) == len(PALETTE)
REPO_EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def private_cache_dir() -> Path:
    """A folder only this user can read, in RAM where the system has /dev/shm."""
    shm = Path("/dev/shm")
    parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="lisa-web-", dir=parent))


def mask_label(index: int, score: float, present: bool = True) -> str:
    verdict = "judged absent, empty" if not present else f"score {score:.2f}"
    return f"mask {index + 1} ({COLOUR_NAMES[index % len(COLOUR_NAMES)]}, {verdict})"


def example_rows(folder: Path | None) -> list[list[str]]:
    """[image path, query] rows from folder/examples.json (the repository's examples/)."""
    folder = folder or REPO_EXAMPLES
    listing = folder / "examples.json"
    if not listing.is_file():
        return []
    return [[str(folder / e["image"]), e["query"]] for e in json.loads(listing.read_text())]


def build_demo(workers: WorkerPool, model_name: str = "lisa-tiny", cache_dir: Path | None = None,
               examples_dir: Path | None = None, timeout_s: float = 120.0, max_new_tokens: int = 64,
               log_requests: bool = False):
    import gradio as gr

    cache_dir = cache_dir or private_cache_dir()

    def ask(image, query, state):
        if image is None:
            raise gr.Error("Upload or pick an image first.")
        query = (query or "").strip()
        if not query:
            raise gr.Error("Type a question about the image.")
        image = np.ascontiguousarray(image[..., :3]) if image.ndim == 3 else np.stack([image] * 3, -1)
        history = state["history"] if state and state.get("shape") == image.shape and np.array_equal(
            state.get("image"), image) else []
        if log_requests:
            log.info("web %dx%d %r", image.shape[1], image.shape[0], query)
        try:
            result = workers.submit(image, query, history, max_new_tokens).result(timeout_s)
        except QueueFull:
            raise gr.Error("The server is busy; try again in a moment.") from None
        except FutureTimeout:
            raise gr.Error(f"No answer within {timeout_s:g} s; try again.") from None
        except LisaError as error:
            raise gr.Error(str(error)) from None
        history = history + [(query, result.text)]
        state = {"image": image, "shape": image.shape, "history": history, "masks": result.masks,
                 "scores": result.scores}
        present = result.present if result.present is not None else [True] * len(result.scores)
        labels = [mask_label(i, float(s), bool(p)) for i, (s, p) in enumerate(zip(result.scores, present))]
        files = _write_downloads(cache_dir, image, query, result)
        return (_chat(history), draw_overlay(image, result.masks, dim_rest=True),
                gr.update(choices=labels, value=labels), files, state, "")

    def toggle(selected, state):
        if not state or state.get("masks") is None:
            return gr.update()
        labels = [mask_label(i, float(s)) for i, s in enumerate(state["scores"])]
        keep = np.array([label in (selected or []) for label in labels], dtype=bool)
        # unselected masks are emptied, not dropped, so every mask keeps its colour
        if not keep.any():
            return state["image"]
        return draw_overlay(state["image"], state["masks"] & keep[:, None, None], dim_rest=True)

    def reset():
        return [], None, gr.update(choices=[], value=[]), None, {"history": []}

    with gr.Blocks(title="lisa-seg", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"# lisa-seg: reasoning segmentation\nModel: `{model_name}`. Ask about the image; "
                    "follow-up questions keep the conversation. A new image starts a new one.")
        state = gr.State({"history": []})
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="numpy", label="Image", sources=["upload", "clipboard"], elem_id="image")
                query = gr.Textbox(label="Question", placeholder="What in this picture would keep you dry in the rain?",
                                   elem_id="query")
                with gr.Row():
                    send = gr.Button("Ask", variant="primary", elem_id="ask")
                    clear = gr.Button("New conversation", elem_id="clear")
                rows = example_rows(examples_dir)
                if rows:
                    gr.Examples(rows, inputs=[image, query], label="Examples")
            with gr.Column():
                overlay = gr.Image(type="numpy", label="Masks", interactive=False, elem_id="overlay", format="png")
                toggles = gr.CheckboxGroup(label="Show", choices=[], elem_id="toggles")
                chat = gr.Chatbot(label="Conversation", elem_id="chat", height=260)
                downloads = gr.File(label="Download masks (PNG, COCO RLE JSON)", file_count="multiple",
                                    interactive=False, elem_id="downloads")
        outputs = [chat, overlay, toggles, downloads, state, query]
        send.click(ask, [image, query, state], outputs)
        query.submit(ask, [image, query, state], outputs)
        toggles.change(toggle, [toggles, state], overlay)
        clear.click(reset, None, [chat, overlay, toggles, downloads, state])
        image.upload(reset, None, [chat, overlay, toggles, downloads, state])
    demo.lisa_cache_dir = cache_dir
    return demo


def _chat(history: list[tuple[str, str]]) -> list[dict]:
    messages = []
    for question, answer in history:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


def _write_downloads(cache_dir: Path, image: np.ndarray, query: str, result) -> list[str]:
    folder = Path(tempfile.mkdtemp(prefix="turn-", dir=cache_dir))
    paths = []
    for index, mask in enumerate(result.masks):
        path = folder / f"mask_{index + 1}.png"
        path.write_bytes(png_bytes(mask.astype(np.uint8) * 255))
        paths.append(str(path))
    record = {"query": query, "text": result.text, "image_size": [int(image.shape[0]), int(image.shape[1])],
              "masks": mask_records(result.masks, result.scores, result.present)}
    rle = folder / "masks_rle.json"
    rle.write_text(json.dumps(record, indent=2) + "\n")
    return paths + [str(rle)]


def mount(app, workers: WorkerPool, path: str = "/web", model_name: str = "lisa-tiny", token: str | None = None,
          examples_dir: Path | None = None, log_requests: bool = False) -> Path:
    """Add the demo to the API's FastAPI ``app`` at ``path``, on the same workers. With a token
    the demo asks for it on a login page (any user name; the password is the token).
    Returns the private cache folder, for the caller to remove when the server stops."""
    import hmac

    import gradio as gr

    cache_dir = private_cache_dir()
    os.environ["GRADIO_TEMP_DIR"] = str(cache_dir)
    demo = build_demo(workers, model_name, cache_dir, examples_dir, log_requests=log_requests)
    auth = None
    if token is not None:
        auth = lambda user, password: hmac.compare_digest(password.encode(), token.encode())  # noqa: E731
    gr.mount_gradio_app(app, demo, path=path, allowed_paths=[str(cache_dir)], auth=auth, ssr_mode=False,
                        show_error=True)
    return cache_dir


def launch(workers: WorkerPool, host: str = "127.0.0.1", port: int = 7860, model_name: str = "lisa-tiny",
           log_requests: bool = False, examples_dir: Path | None = None, block: bool = True):
    """Serve until interrupted (``block``), or start and return the running demo (tests call
    ``demo.close()`` and remove ``demo.lisa_cache_dir``). The private cache folder goes with it."""
    cache_dir = private_cache_dir()
    os.environ["GRADIO_TEMP_DIR"] = str(cache_dir)  # uploads land here, not in the system temp folder
    try:
        demo = build_demo(workers, model_name, cache_dir, examples_dir, log_requests=log_requests)
        demo.launch(server_name=host, server_port=port, quiet=True, ssr_mode=False, show_error=True,
                    allowed_paths=[str(cache_dir)], prevent_thread_lock=True)
        print(f"lisa serve web: {model_name} on http://{host}:{port}", flush=True)
        if not block:
            return demo
        demo.block_thread()
    finally:
        if block:
            shutil.rmtree(cache_dir, ignore_errors=True)
    return demo
