using System.Text.Json;
using System.Text.Json.Nodes;
using MiniGpt.Data;
using MiniGpt.Checkpoints;
using MiniGpt.Training;

namespace MiniGpt.Circuits;

/// <summary>One evaluation of a run with --track-circuits: the losses and every head's behavioural scores.</summary>
public sealed record CircuitsLogEntry(long Step, double? Loss, double? ValLoss, double? RepeatLoss, HeadScores Scores);

/// <summary>
/// The --track-circuits log: one JSON object per line, appended at every evaluation, in
/// <c>&lt;checkpoint stem&gt;.circuits.jsonl</c> beside the checkpoint. JSON lines so that a run that is
/// interrupted leaves every finished line readable, and so that a resumed run can append.
/// Each line: {"step", "loss", "val_loss", "repeat_loss", "previous_token": [[layer][head]], "duplicate_token",
/// "induction", "prefix_matching", "copying", "labels"} (loss null at step 0, where nothing was trained yet).
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
        AddScores(o, s);
        return o.ToJsonString();
    }

    /// <summary>Adds the [layer][head] score arrays and labels of s to o, under the names this log and circuits.json use.</summary>
    public static void AddScores(JsonObject o, HeadScores s)
    {
        o["previous_token"] = Grid(s.PreviousToken);
        o["duplicate_token"] = Grid(s.DuplicateToken);
        o["induction"] = Grid(s.Induction);
        o["prefix_matching"] = Grid(s.PrefixMatching);
        o["copying"] = Grid(s.Copying);
        o["labels"] = new JsonArray(s.Labels.Select(row => (JsonNode)new JsonArray(row.Select(x => (JsonNode?)JsonValue.Create(x)).ToArray())).ToArray());
    }

    private static JsonArray Grid(double[][] g) =>
        new(g.Select(row => (JsonNode)new JsonArray(row.Select(x => (JsonNode?)JsonValue.Create(Math.Round(x, 6))).ToArray())).ToArray());

    /// <summary>Reads every line of a log; a damaged line is a <see cref="UserError"/> naming it.</summary>
    public static List<CircuitsLogEntry> Read(string path)
    {
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
                var prev = ReadGrid(o, "previous_token");
                int layers = prev.Length, heads = layers > 0 ? prev[0].Length : 0;
                string[][] labels = o["labels"] is JsonArray la
                    ? la.Select(r => (r as JsonArray ?? throw new FormatException("labels")).Select(x => x?.GetValue<string>() ?? "").ToArray()).ToArray()
                    : prev.Select(r => new string[r.Length]).ToArray();
                var s = new HeadScores(layers, heads, prev, ReadGrid(o, "duplicate_token"), ReadGrid(o, "induction"),
                    ReadGrid(o, "prefix_matching"), ReadGrid(o, "copying"), labels);
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
        if (o[key] is not JsonArray rows) throw new FormatException($"no '{key}'");
        return rows.Select(r => (r as JsonArray ?? throw new FormatException($"'{key}' is not [layer][head]"))
            .Select(x => x?.GetValue<double>() ?? double.NaN).ToArray()).ToArray();
    }
}
