using System.Text;
using System.Text.Json;
using MiniGpt.Training;

namespace MiniGpt.Train.Runs;

/// <summary>
/// One line of a run's metrics.jsonl: {"step", "loss", "val_loss", "repeat_loss", "lr", "grad_norm",
/// "tokens_per_s", "elapsed_s"}. loss is the mean training loss since the previous line (null at step 0,
/// before any training); val_loss and repeat_loss are null where the line has no evaluation. Floats are
/// written in their shortest round-trip form, so a reader gets back the very bits the trainer logged
/// (the resume test compares them bit for bit).
/// </summary>
public sealed record MetricsLine(long Step, float? Loss, float? ValLoss, float? RepeatLoss, float Lr, float GradNorm, double TokensPerSecond, double ElapsedSeconds)
{
    /// <summary>The line of a log; its elapsed_s is the log's, the run's training time across resumes (TrainLog.Elapsed).</summary>
    public static MetricsLine From(TrainLog l) =>
        new(l.Step, float.IsFinite(l.Loss) ? l.Loss : null, l.ValLoss, l.RepeatLoss, l.Lr, l.GradNorm, l.TokensPerSecond, l.Elapsed.TotalSeconds);

    public string ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteNumber("step", Step);
            Write(w, "loss", Loss);
            Write(w, "val_loss", ValLoss);
            Write(w, "repeat_loss", RepeatLoss);
            Write(w, "lr", Lr);
            Write(w, "grad_norm", GradNorm);
            w.WriteNumber("tokens_per_s", Math.Round(TokensPerSecond, 1));
            w.WriteNumber("elapsed_s", Math.Round(ElapsedSeconds, 3));
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static void Write(Utf8JsonWriter w, string name, float? v)
    {
        // JSON has no NaN or Infinity: such a value (none is logged today) is written as null, not as a broken line
        if (v is float f && float.IsFinite(f)) w.WriteNumber(name, f); else w.WriteNull(name);
    }

    /// <summary>Parses one line; null when it is not a whole metrics object (e.g. the torn tail of a killed run).</summary>
    public static MetricsLine? TryParse(string line)
    {
        try
        {
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) return null;
            float? F(string k) => r.TryGetProperty(k, out var e) && e.ValueKind == JsonValueKind.Number ? e.GetSingle() : null;
            double D(string k) => r.TryGetProperty(k, out var e) && e.ValueKind == JsonValueKind.Number ? e.GetDouble() : 0;
            if (!r.TryGetProperty("step", out var s) || !s.TryGetInt64(out long step)) return null;
            return new MetricsLine(step, F("loss"), F("val_loss"), F("repeat_loss"), F("lr") ?? 0, F("grad_norm") ?? 0, D("tokens_per_s"), D("elapsed_s"));
        }
        catch (JsonException) { return null; }
    }
}
