// What the examples share (included by each with #:include, so every example stays one file to read): a tiny
// checkpoint to run on when none is given, and argument and checkpoint errors as one line and exit code 2.
using MiniGpt.Checkpoints;
using MiniGpt.Training;

static class Example
{
    // A briefly trained 2-layer model (seconds), written once into the temp folder and reused by the examples. Its heads have
    // barely started to specialise; pass a real checkpoint (e.g. the default run's, README "The default run") to see an
    // induction head.
    public static string TinyCheckpoint()
    {
        string path = Path.Combine(Path.GetTempPath(), "minigpt-examples", "induction.safetensors");
        // a file left by another version of MiniGpt that no longer loads is trained again, not an error in every example
        if (File.Exists(path))
        {
            try { Checkpoint.Load(path); return path; }
            catch (MiniGpt.UserError) { Console.WriteLine($"{path} does not load with this MiniGpt: training it again"); }
        }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        Console.WriteLine($"training a tiny model on the induction task into {path} …");
        var o = new TrainOptions
        {
            Data = "induction", Model = new() { NLayers = 2, DModel = 32, NHeads = 4, NCtx = 32 }, BatchSize = 8, Steps = 60, WarmupSteps = 10,
            EvalInterval = 60, EvalBatches = 1, LogInterval = 60, CheckpointInterval = 60, Out = path, Seed = 1,
        };
        Trainer.Start(o).Run(_ => { });
        return path;
    }

    // Arguments: a clear one-line error and exit code 2 for bad input, never a stack trace.
    public static int IntArg(string[] args, int i, int fallback, string what)
    {
        if (args.Length <= i) return fallback;
        if (int.TryParse(args[i], out int v) && v >= 0) return v;
        Console.Error.WriteLine($"error: the {what} '{args[i]}' is not a whole number ≥ 0: give one, e.g. {fallback}");
        Environment.Exit(2);
        return 0;
    }

    public static MiniGpt.Model.GptModel LoadModel(string path)
    {
        try { return Checkpoint.Load(path).Model; }
        catch (MiniGpt.UserError e) { Console.Error.WriteLine($"error: {e.Message}"); Environment.Exit(2); return null!; }
    }
}
