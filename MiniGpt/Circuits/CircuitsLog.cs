using System.Text.Json;
using System.Text.Json.Nodes;
using MiniGpt.Checkpoints;
using MiniGpt.Training;

namespace MiniGpt.Circuits;

/// <summary>One evaluation of a run with --track-circuits: the losses and the heads' behavioural scores (those its line has).</summary>
public sealed record CircuitsLogEntry(long Step, double? Loss, double? ValLoss, double? RepeatLoss, HeadScores Scores);

/// <summary>
/// The --track-circuits log: one JSON object per line, appended at every evaluation, in
/// <c>&lt;checkpoint stem&gt;.circuits.jsonl</c> beside the checkpoint. JSON lines so that a run that is
/// interrupted leaves every finished line readable, and so that a resumed run can append.
/// Each line: {"step", "loss", "val_loss", "repeat_loss", one [layer][head] array per registered score under
/// its name ("previous_token", "duplicate_token", "induction", "prefix_matching", "copying" by default),
/// "labels"} (loss null at step 0, where nothing was trained yet). A reader takes the scores of its
/// registry that a line has: a log written before a score was registered still reads, without that score.
/// </summary>
public static class CircuitsLog
{
    /// <summary>out/model.safetensors → out/model.circuits.jsonl</summary>
    public static string PathFor(string checkpoint) => Checkpoint.Stem(checkpoint) + ".circuits.jsonl";

    public static string ToJsonLine(TrainLog log, HeadScores s)
    {
        var o = new JsonObject
        {
            ["step"] = log.Step,
            ["loss"] = float.IsFinite(log.Loss) ? log.Loss : null,
            ["val_loss"] = log.ValLoss,
            ["repeat_loss"] = log.RepeatLoss,
        };
        foreach (var score in s.Set)
            if (s.Grids.TryGetValue(score.Name, out var g)) o[score.Name] = Grid(g);
        o["labels"] = new JsonArray(s.Labels.Select(row => (JsonNode)new JsonArray(row.Select(x => (JsonNode?)JsonValue.Create(x)).ToArray())).ToArray());
        return o.ToJsonString();
    }

    private static JsonArray Grid(double[][] g) =>
        new(g.Select(row => (JsonNode)new JsonArray(row.Select(x => (JsonNode?)JsonValue.Create(Math.Round(x, 6))).ToArray())).ToArray());

    /// <summary>
    /// Reads every line of a log with the scores of <paramref name="scores"/> (null: the default set); a
    /// score a line lacks is absent from its entry, a key the set does not know is passed over, and a damaged
    /// line is a <see cref="UserError"/> naming it. Lines without labels get them from the set's labeler.
    /// </summary>
    public static List<CircuitsLogEntry> Read(string path, HeadScoreSet? scores = null)
    {
        scores ??= HeadScoreSet.Default;
        var result = new List<CircuitsLogEntry>();
        int lineNo = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                var o = JsonNode.Parse(line) as JsonObject ?? throw new FormatException("not a JSON object");
                long step = o["step"]?.GetValue<long>() ?? throw new FormatException("no step");
                var grids = new Dictionary<string, double[][]>(StringComparer.Ordinal);
                foreach (var score in scores)
                    if (o.ContainsKey(score.Name)) grids[score.Name] = ReadGrid(o, score.Name);
                var shape = grids.Values.FirstOrDefault();
                int layers = shape?.Length ?? 0, heads = layers > 0 ? shape![0].Length : 0;
                foreach (var (name, g) in grids)
                    if (g.Length != layers || g.Any(r => r.Length != heads)) throw new FormatException($"'{name}' is not [{layers}][{heads}] as the other scores");
                string[][]? labels = o["labels"] is JsonArray la
                    ? la.Select(r => (r as JsonArray ?? throw new FormatException("labels")).Select(x => x?.GetValue<string>() ?? "").ToArray()).ToArray()
                    : null;
                if (grids.Count == 0 && labels != null) (layers, heads) = (labels.Length, labels.Length > 0 ? labels[0].Length : 0);
                var s = new HeadScores(layers, heads, scores, grids, labels ?? new string[layers][]);
                if (labels == null)
                    for (int l = 0; l < layers; l++)
                    {
                        s.Labels[l] = new string[heads];
                        for (int h = 0; h < heads; h++) s.Labels[l][h] = scores.Label(name => s.Value(name, l, h));
                    }
                result.Add(new CircuitsLogEntry(step, Num(o, "loss"), Num(o, "val_loss"), Num(o, "repeat_loss"), s));
            }
            catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
            {
                throw new UserError($"'{path}' line {lineNo} is not a circuits log entry ({e.Message.Split('\n')[0]}): delete the file or fix the line");
            }
        }
        return result;
    }

    private static double? Num(JsonObject o, string key) => o[key] is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? v.GetValue<double>() : null;

    private static double[][] ReadGrid(JsonObject o, string key)
    {
        if (o[key] is not JsonArray rows) throw new FormatException($"'{key}' is not [layer][head]");
        return rows.Select(r => (r as JsonArray ?? throw new FormatException($"'{key}' is not [layer][head]"))
            .Select(x => x?.GetValue<double>() ?? double.NaN).ToArray()).ToArray();
    }
}
