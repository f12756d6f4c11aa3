// gemini-magics in JupyterLab 4 and Notebook 7 (one plugin, no settings).
// 1. A code cell whose source starts with `%%gemini` holds a Markdown prompt, not Python: its
//    editor gets the Markdown language (the cell model's mimeType, as Markdown cells use), and
//    the kernel language's mimeType again once the magic line is gone.
// 2. A saved `%gemini ui` panel (or unfinished `--ui` view) whose widget lives in no kernel any
//    more shows its text/plain line instead of "Error displaying widget: model not found".
//    Our widget outputs carry output metadata {"gemini_magics": {"kind": "panel" | "live view"}};
//    notebooks saved before that are recognised by their text/plain line.
import { INotebookTracker } from '@jupyterlab/notebook';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';

const MAGIC = /^\s*%%gemini(?:\s|$)/;
const MARKDOWN = 'text/x-ipythongfm';
const WIDGET_VIEW = 'application/vnd.jupyter.widget-view+json';
const WIDGET_STATE = 'application/vnd.jupyter.widget-state+json';
const OUR_KINDS = new Set(['panel', 'live view']);
const OUR_WIDGET = /^Gemini (panel|live view)\b/; // notebooks saved without the metadata

// Whether an output is one of our widgets: by its metadata, else (older notebooks) its text.
function isOurWidget(output, plain) {
  const ours = (output.metadata || {}).gemini_magics;
  return ours ? OUR_KINDS.has(ours.kind) : OUR_WIDGET.test(plain);
}

function watchNotebook(panel, languages) {
  const notebook = panel.content;
  const watched = new WeakSet();
  const switched = new WeakSet(); // the cells we made Markdown (only these are switched back)

  // Set the language the source asks for; later, once the language the cell had is loaded, so
  // the notebook's own setting (on cell insertion, or when the kernel's language_info arrives)
  // is applied first and ours wins. Cells without the magic that we did not switch are left
  // alone (another extension may have set their language).
  const update = cell => {
    if (cell.isDisposed || cell.type !== 'code') return;
    let want;
    if (MAGIC.test(cell.sharedModel.getSource())) {
      want = MARKDOWN;
      switched.add(cell);
    } else if (switched.has(cell)) {
      want = notebook.codeMimetype || 'text/x-ipython';
      switched.delete(cell);
    } else {
      return;
    }
    if (cell.mimeType === want) return;
    const previous = cell.mimeType;
    const loaded = languages
      ? languages.getLanguage(previous).catch(() => null)
      : Promise.resolve();
    void loaded.then(() => {
      if (!cell.isDisposed) cell.mimeType = want;
    });
  };
  const watchCell = cell => {
    if (watched.has(cell) || cell.type !== 'code') return;
    watched.add(cell);
    cell.sharedModel.changed.connect((_, change) => {
      if (change.sourceChange) update(cell);
    });
    cell.mimeTypeChanged.connect(() => update(cell));
    update(cell);
  };
  const watchModel = model => {
    if (!model) return;
    for (const cell of model.cells) watchCell(cell);
    model.cells.changed.connect((_, args) => {
      if (args.type === 'add' || args.type === 'set') args.newValues.forEach(watchCell);
    });
  };
  watchModel(notebook.model);
  notebook.modelChanged.connect(() => watchModel(notebook.model));

  void panel.context.ready.then(() => showDeadWidgetsAsText(panel));
}

// Our widget outputs whose model is neither live in the current kernel nor in saved widget
// state are dead (the kernel that made them is gone): show their text/plain instead. The file
// on disk is untouched until the user saves; the notebook is not marked dirty by this.
async function showDeadWidgetsAsText(panel) {
  await panel.sessionContext.ready;
  const model = panel.context.model;
  let live = [];
  const kernel = panel.sessionContext.session?.kernel;
  if (kernel) {
    try {
      const reply = await kernel.requestCommInfo({ target_name: 'jupyter.widget' });
      if (reply.content.status !== 'ok') return;
      live = Object.keys(reply.content.comms);
    } catch (err) {
      return; // not known: leave it to ipywidgets
    }
  }
  const saved = (model.getMetadata('widgets') || {})[WIDGET_STATE] || {};
  const keep = new Set([...live, ...Object.keys(saved.state || {})]);
  const wasDirty = model.dirty;
  for (const cell of model.cells) {
    if (cell.type !== 'code') continue;
    for (let i = 0; i < cell.outputs.length; i++) {
      const output = cell.outputs.get(i).toJSON();
      const data = output.data || {};
      const plain = [].concat(data['text/plain'] || []).join('');
      const view = data[WIDGET_VIEW];
      if (!view || !isOurWidget(output, plain) || !view.model_id || keep.has(view.model_id)) continue;
      const rest = Object.assign({}, data);
      delete rest[WIDGET_VIEW];
      cell.outputs.set(i, Object.assign({}, output, { data: rest }));
    }
  }
  model.dirty = wasDirty;
}

export default {
  id: 'gemini-magics:plugin',
  description: '%%gemini cells are edited as Markdown; dead gemini widgets show their text.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IEditorLanguageRegistry],
  activate: (app, tracker, languages) => {
    tracker.forEach(panel => watchNotebook(panel, languages));
    tracker.widgetAdded.connect((_, panel) => watchNotebook(panel, languages));
  }
};
