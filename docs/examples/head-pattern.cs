#!/usr/bin/env dotnet
#:project ../../MiniGpt/MiniGpt.csproj
#:property PublishAot=false
#:property Configuration=Release
#:include ExampleSupport.cs
// Loads a checkpoint and prints one head's attention pattern on a repeated random sequence.
//   dotnet run docs/examples/head-pattern.cs [checkpoint] [layer] [head]
// Without a checkpoint it trains a tiny model first (a few seconds) and keeps it for the other examples.
using MiniGpt.Checkpoints;
using MiniGpt.Circuits;
using MiniGpt.Training;

string path = args.Length > 0 && args[0] != "" ? args[0] : Example.TinyCheckpoint();
int layer = Example.IntArg(args, 1, 1, "layer"), head = Example.IntArg(args, 2, 0, "head");
var model = Example.LoadModel(path);
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
