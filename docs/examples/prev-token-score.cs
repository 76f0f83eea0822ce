#!/usr/bin/env dotnet
#:project ../../MiniGpt/MiniGpt.csproj
#:property PublishAot=false
#:property Configuration=Release
#:include ExampleSupport.cs
// Every head's previous-token score computed by hand from the cached pattern, beside the library's (HeadScores).
//   dotnet run docs/examples/prev-token-score.cs [checkpoint]
// score(l, h) = mean over sequences b and queries i ≥ 1 of pattern[b, h, i, i − 1], on repeated random sequences.
using MiniGpt.Checkpoints;
using MiniGpt.Circuits;
using MiniGpt.Training;

string path = args.Length > 0 && args[0] != "" ? args[0] : Example.TinyCheckpoint();
var model = Example.LoadModel(path);
var c = model.Config;
int B = 8, half = c.NCtx / 2, T = 2 * half, H = c.NHeads;
const ulong seed = 1;

// the library: HeadScores runs the same probe (HeadProbe.RepeatedRandomTokens with this seed) and scores every head
var library = HeadScores.Compute(model, batch: B, seqLen: half, seed: seed)[PreviousTokenScore.Id];

// by hand: one pass that keeps the patterns, then read them from the cache ([B, H, T, T] of this pass)
var tokens = HeadProbe.RepeatedRandomTokens(c.DVocab, B, half, seed);
model.KeepPatterns = true;
model.Forward(tokens, default, B, T);
double worst = 0;
Console.WriteLine("head   by hand   library");
for (int l = 0; l < c.NLayers; l++)
{
    var A = model.Cache!.Acts[$"blocks.{l}.attn.hook_pattern"].Span;
    for (int h = 0; h < H; h++)
    {
        double sum = 0; int n = 0;
        for (int b = 0; b < B; b++)
            for (int i = 1; i < T; i++) { sum += A[((b * H + h) * T + i) * T + i - 1]; n++; }
        double mine = sum / n;
        worst = Math.Max(worst, Math.Abs(mine - library[l][h]));
        Console.WriteLine($"L{l}H{h}   {mine,7:0.0000}   {library[l][h],7:0.0000}");
    }
}
bool ok = worst <= 1e-9;
Console.WriteLine(ok ? $"check: by hand = library (max difference {worst:G3}): ok" : $"check: max difference {worst:G3}: FAILED");
return ok ? 0 : 1;
