#:project ../../MiniGpt/MiniGpt.csproj
#:property PublishAot=false
#:property Configuration=Release
// Loads a checkpoint and prints one head's attention pattern on a repeated random sequence.
//   dotnet run docs/examples/head-pattern.cs [checkpoint] [layer] [head]
// Without a checkpoint it trains a tiny model first (a few seconds) and keeps it for the other examples.
using MiniGpt.Checkpoints;
using MiniGpt.Circuits;
using MiniGpt.Training;

string path = args.Length > 0 && args[0] != "" ? args[0] : TinyCheckpoint();
int layer = IntArg(args, 1, 1, "layer"), head = IntArg(args, 2, 0, "head");
var model = LoadModel(path);
var c = model.Config;
if (layer >= c.NLayers || head >= c.NHeads) { Console.Error.WriteLine($"error: L{layer}H{head} is not in a model of {c.NLayers} layers × {c.NHeads} heads"); return 2; }

// 6 random tokens, then the same 6 again: an induction head attends from each second-half token to the one after its first copy
const int half = 6, T = 2 * half;
var tokens = HeadProbe.RepeatedRandomTokens(c.DVocab, 1, half, seed: 3);
model.KeepPatterns = true;
model.Forward(tokens, default, 1, T);
var pattern = model.Cache!.Acts[$"blocks.{layer}.attn.hook_pattern"]; // [1, H, T, T], this pass's shape
Console.WriteLine($"{pattern.DebuggerText}");
Console.WriteLine($"L{layer}H{head}, row = query, column = key (tokens {string.Join(' ', tokens)}):");
var p = pattern.Span.Slice(head * T * T, T * T);
bool rowsSumToOne = true;
for (int i = 0; i < T; i++)
{
    double sum = 0;
    var cells = new string[T];
    for (int j = 0; j < T; j++) { sum += p[i * T + j]; cells[j] = j > i ? "   ." : $"{p[i * T + j],4:0.00}"[^4..]; }
    rowsSumToOne &= Math.Abs(sum - 1) < 1e-4;
    Console.WriteLine($"  {i,2} {string.Join(' ', cells)}");
}
// the induction target of query i ≥ half is key i − half + 1: the mean attention there
double induction = 0;
for (int i = half; i < T; i++) induction += p[i * T + i - half + 1];
Console.WriteLine($"mean attention on the induction target: {induction / (T - half):0.00}");
Console.WriteLine(rowsSumToOne ? "check: every row sums to 1: ok" : "check: a row does not sum to 1: FAILED");
return rowsSumToOne ? 0 : 1;

// A briefly trained 2-layer model (seconds), written once into the temp folder and reused by the examples. Its heads have
// barely started to specialise; pass a real checkpoint (e.g. the default run's, README "The default run") to see an
// induction head.
static string TinyCheckpoint()
{
    string path = Path.Combine(Path.GetTempPath(), "minigpt-examples", "induction.safetensors");
    if (File.Exists(path)) return path;
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
static int IntArg(string[] args, int i, int fallback, string what)
{
    if (args.Length <= i) return fallback;
    if (int.TryParse(args[i], out int v) && v >= 0) return v;
    Console.Error.WriteLine($"error: the {what} '{args[i]}' is not a whole number ≥ 0: give one, e.g. {fallback}");
    Environment.Exit(2);
    return 0;
}

static MiniGpt.Model.GptModel LoadModel(string path)
{
    try { return Checkpoint.Load(path).Model; }
    catch (MiniGpt.UserError e) { Console.Error.WriteLine($"error: {e.Message}"); Environment.Exit(2); return null!; }
}
