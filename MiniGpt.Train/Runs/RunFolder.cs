using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using MiniGpt.Train.Report;
using MiniGpt.Training;

namespace MiniGpt.Train.Runs;

/// <summary>
/// A run's folder, runs/&lt;name&gt;/: config.json (every resolved setting), metrics.jsonl (one line per
/// logged step), model.safetensors with its training state (model.train.safetensors), loss.png (train and
/// validation curves, redrawn at every evaluation) and, with --track-circuits, model.circuits.jsonl and
/// circuits/. Every file but metrics.jsonl is replaced atomically; metrics.jsonl is appended line by line
/// and, on resume, cut back to the steps the checkpoint has (lines after it, and a line torn by a kill,
/// would otherwise repeat or break the curve).
/// </summary>
public sealed class RunFolder
{
    public const string Root = "runs";
    public const string CheckpointName = "model.safetensors";

    public string Dir { get; }
    public string Name => Path.GetFileName(Dir.TrimEnd(Path.DirectorySeparatorChar));
    public string Checkpoint => Path.Combine(Dir, CheckpointName);
    public string ConfigPath => Path.Combine(Dir, "config.json");
    public string MetricsPath => Path.Combine(Dir, "metrics.jsonl");
    public string PlotPath => Path.Combine(Dir, "loss.png");
    public string CircuitsDir => Path.Combine(Dir, "circuits");

    private readonly List<MetricsLine> _lines = new();

    private RunFolder(string dir) { Dir = dir; }

    /// <summary>
    /// The folder for a new run, not yet created (so a config that fails to start leaves nothing behind).
    /// name null: a generated, sortable name, date-time then what it trains on (20261125-143512-induction).
    /// </summary>
    public static RunFolder Plan(string? name, string data, bool overwrite, string root = Root)
    {
        if (name == null)
        {
            string stem = Sanitize(data == "induction" ? data : Path.GetFileNameWithoutExtension(data));
            string baseName = $"{DateTime.Now.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}-{stem}";
            name = baseName;
            for (int k = 2; Directory.Exists(Path.Combine(root, name)); k++) name = $"{baseName}-{k}";
        }
        else if (name.Length == 0 || name.Length > 100 || name is "." or ".." || name.Any(ch => !(char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_' or '.')))
            throw new UsageError($"--name '{name}' is not a folder name: use letters, digits, '-', '_' and '.' (at most 100)");
        var run = new RunFolder(Path.Combine(root, name));
        if (File.Exists(run.Dir)) throw new UsageError($"'{run.Dir}' is a file: choose another --name");
        if (File.Exists(run.Checkpoint) && !overwrite)
            throw new UsageError($"run '{name}' already exists ({run.Dir}): pass --resume {run.Dir} to continue it, --overwrite to start it again, or another --name");
        return run;
    }

    /// <summary>The checkpoint of an existing run folder, for --resume.</summary>
    public static string CheckpointIn(string dir)
    {
        string ckpt = Path.Combine(dir, CheckpointName);
        if (!File.Exists(ckpt))
            throw new UserError($"'{dir}' holds no {CheckpointName}: the run stopped before its first checkpoint (start it again) or this is not a run folder");
        return ckpt;
    }

    /// <summary>Creates the folder of a new run and writes config.json; an earlier run of that name (--overwrite) loses its logs.</summary>
    public void Begin(Trainer t)
    {
        Directory.CreateDirectory(Dir);
        // everything of the earlier run goes, checkpoints too: its weights and training state left beside the new
        // config would let --resume continue the old run in the new run's folder
        foreach (string stale in new[] { MetricsPath, PlotPath, Path.Combine(Dir, "model.train.prev.safetensors"), Path.Combine(Dir, "model.circuits.jsonl"),
                     Path.Combine(Dir, CheckpointName), Path.Combine(Dir, "model.train.safetensors") })
            if (File.Exists(stale)) File.Delete(stale);
        if (Directory.Exists(Path.Combine(Dir, "circuits"))) Directory.Delete(Path.Combine(Dir, "circuits"), recursive: true);
        WriteAtomically(ConfigPath, Encoding.UTF8.GetBytes(ConfigJson(t) + "\n"));
    }

    /// <summary>Opens the folder of a run resumed at step: keeps its metrics up to that step (the clock goes on in the trainer: Trainer.ElapsedBefore).</summary>
    public static RunFolder Reopen(string dir, long step)
    {
        var run = new RunFolder(dir.TrimEnd('/', Path.DirectorySeparatorChar));
        run.RemoveStaleTemporaries();
        if (File.Exists(run.MetricsPath))
        {
            var lines = File.ReadAllLines(run.MetricsPath);
            for (int i = 0; i < lines.Length; i++)
            {
                if (string.IsNullOrWhiteSpace(lines[i])) continue;
                var m = MetricsLine.TryParse(lines[i]);
                if (m == null)
                {
                    if (i == lines.Length - 1) break; // the torn last line of a killed run
                    throw new UserError($"'{run.MetricsPath}' line {i + 1} is not a metrics line: fix or delete the line, then resume again");
                }
                if (m.Step <= step) run._lines.Add(m);
            }
            run.ElapsedAtReopen = TimeSpan.FromSeconds(run._lines.Count > 0 ? run._lines[^1].ElapsedSeconds : 0);
            WriteAtomically(run.MetricsPath, Encoding.UTF8.GetBytes(string.Concat(run._lines.Select(l => l.ToJson() + "\n"))));
        }
        run.CutCircuitsLog(step);
        return run;
    }

    public IReadOnlyList<MetricsLine> Lines => _lines;

    /// <summary>
    /// The elapsed time of the last metrics line kept by Reopen: the run's training time when the state it
    /// resumes from does not record its own (states written before elapsed_s was saved).
    /// </summary>
    public TimeSpan ElapsedAtReopen { get; private set; }

    public string CircuitsLogPath => Path.Combine(Dir, "model.circuits.jsonl");

    /// <summary>
    /// The --track-circuits log gets the same cut as metrics.jsonl: lines after the checkpoint's step would
    /// be logged again by the resumed run, and a line torn by a kill is dropped.
    /// </summary>
    private void CutCircuitsLog(long step)
    {
        if (!File.Exists(CircuitsLogPath)) return;
        var keep = new StringBuilder();
        foreach (string line in File.ReadAllLines(CircuitsLogPath))
        {
            long? s = null;
            try { s = System.Text.Json.Nodes.JsonNode.Parse(line)?["step"]?.GetValue<long>(); }
            catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException) { }
            if (s is long v && v <= step) keep.Append(line).Append('\n');
        }
        WriteAtomically(CircuitsLogPath, Encoding.UTF8.GetBytes(keep.ToString()));
    }

    /// <summary>
    /// Deletes the ".NAME.PID.tmp" files that a killed run left half-written (the files they were to replace
    /// are whole: see WriteAtomically). Only the run's own writer makes them, and it is not running.
    /// </summary>
    private void RemoveStaleTemporaries()
    {
        foreach (string tmp in Directory.EnumerateFiles(Dir, ".*.tmp"))
            try { File.Delete(tmp); } catch (IOException) { }
    }

    /// <summary>Appends a logged step; at an evaluation also redraws loss.png.</summary>
    public void Record(TrainLog log)
    {
        var line = MetricsLine.From(log);
        _lines.Add(line);
        File.AppendAllText(MetricsPath, line.ToJson() + "\n");
        if (log.ValLoss != null) DrawPlot();
    }

    /// <summary>
    /// Redraws loss.png from the lines so far. Rendering takes ScottPlot tens of milliseconds (over a second
    /// the first time, loading fonts), so it runs beside training rather than in the step loop's clock;
    /// one drawing at a time, and wait: true (the end of the run) returns only when the file is down.
    /// </summary>
    public void DrawPlot(bool wait = false)
    {
        _drawing?.GetAwaiter().GetResult(); // the previous drawing's error, if any, surfaces here
        _drawing = null;
        if (_lines.Count == 0) return;
        var snapshot = _lines.ToArray();
        string name = Name, path = PlotPath;
        _drawing = Task.Run(() => WriteAtomically(path, TrainingCurvePlot.Render(snapshot, name)));
        if (wait) { _drawing.GetAwaiter().GetResult(); _drawing = null; }
    }

    private Task? _drawing;

    /// <summary>
    /// config.json: the run's settings with every default filled in: "train" the training settings, "model" the
    /// model as built (its HookedTransformerConfig, every value stated), for a fine-tuning run "init_from" (what F
    /// was: InitSource), then the machine.
    /// </summary>
    public static string ConfigJson(Trainer t)
    {
        var c = t.Model.Config;
        var train = JsonNode.Parse(t.Options.ToJson())!.AsObject();
        train.Remove("model"); // as asked for, with unset values; "model" below is what they became
        // a fine-tuning run's source (format, size, SHA-256) stands on its own at the top, beside what it made
        var source = t.Options.InitSource is { } src ? JsonNode.Parse(src.ToJson()) : null;
        train.Remove("init_source");
        // what ran, where it is not what was asked for: the tokenizer of the data (a prepared folder's own, whatever
        // --tokenizer said; null for token ids: the induction task, a .bin), and the validation batches an evaluation
        // runs (the induction task clamps --eval-batches to 8), beside the number given
        train["tokenizer"] = t.Tokenizer?.Name;
        if (t.ValidationBatchCount != t.Options.EvalBatches)
        {
            int at = train.IndexOf("eval_batches");
            train["eval_batches"] = t.ValidationBatchCount;
            train.Insert(at + 1, "eval_batches_given", t.Options.EvalBatches);
        }
        var o = new JsonObject
        {
            ["train"] = train,
            ["model"] = JsonNode.Parse(c.ToJson()),
            ["parameters"] = t.Model.ParameterCount,
            ["threads"] = Tensors.WorkerPool.Shared.Threads,
            ["data"] = t.Data.Describe(),
        };
        if (source != null) o.Insert(2, "init_from", source);
        o["created"] = DateTimeOffset.Now.ToString("O", CultureInfo.InvariantCulture);
        // relaxed escaping keeps "4–16" and "+00:00" readable in the file
        return o.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }

    /// <summary>Writes a file whole or not at all: a temporary file beside it, flushed, then renamed over it.</summary>
    public static void WriteAtomically(string path, byte[] bytes)
    {
        string tmp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{Path.GetFileName(path)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                fs.Write(bytes);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    private static string Sanitize(string s)
    {
        var sb = new StringBuilder();
        foreach (char ch in s) if (char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_') sb.Append(char.ToLowerInvariant(ch));
        string r = sb.ToString();
        return r.Length == 0 ? "run" : r.Length > 24 ? r[..24] : r;
    }
}
