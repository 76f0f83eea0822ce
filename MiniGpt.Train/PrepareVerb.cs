using System.Diagnostics;
using MiniGpt.Data;
using MiniGpt.Train.Progress;

namespace MiniGpt.Train;

public static class PrepareVerb
{
    private static readonly Option<string> Data = Option.Required("data", "the UTF-8 text corpus (read in chunks: it may be larger than memory)", "TEXT");
    private static readonly Option<string> Tokenizer = SharedOptions.Tokenizer.WithHelpLine(
        $"char, bpe:N (learned from the first {Preparer.LearnChars >> 20} Mi characters), cl100k_base, o200k_base or gpt2 (all 50,257 ids)");
    private static readonly Option<string> Out = Option.Required("out", "output folder", "FOLDER");
    private static readonly Option<bool> Overwrite = Option.Flag("overwrite", "replace token files already in --out");

    internal static Options Declare() =>
        new Options("prepare", "prepare: tokenizes a UTF-8 text corpus once into OUT/train.bin and OUT/val.bin (headerless little-endian\n" +
                               "uint16, or uint32 for vocabularies over 65,536, as nanoGPT's) with OUT/meta.json naming the tokenizer;\n" +
                               "'train --data OUT' then streams them through a memory map.",
            Data, Tokenizer, Out, Overwrite);

    public static int Run(string[] args, TextWriter stdout)
    {
        var o = Declare().Parse(args);
        if (o.HelpRequested) { stdout.Write(Declare().Help()); return 0; }
        string data = o.Get(Data);
        string outDir = o.Get(Out);
        string name = o.Get(Tokenizer);
        Tokenizers.CheckName(name);
        if (File.Exists(outDir)) throw new UsageError($"--out '{outDir}' is a file: give a folder");
        if (File.Exists(Path.Combine(outDir, "train.bin")) && !o.Get(Overwrite))
            throw new UsageError($"'{outDir}' already holds prepared tokens: pass --overwrite to replace them, or another --out");

        var clock = Stopwatch.StartNew();
        double lastShown = -1;
        var r = ProgressView.Run(stdout, "prepare", sink => Preparer.Run(data, name, outDir, (read, total) =>
        {
            double f = (double)read / total, secs = clock.Elapsed.TotalSeconds;
            string status = $"{read / 1e6:F1} of {total / 1e6:F1} MB, {read / 1e6 / Math.Max(secs, 1e-9):F1} MB/s, {clock.Elapsed:m\\:ss} elapsed";
            if (sink.WantsStatus) sink.Report(read, total, status);
            // a log line every 10 % (and at the end) keeps logs readable
            if (f - lastShown < 0.1 && read < total) return;
            lastShown = f;
            sink.Line($"prepare: {f:P0} ({status})");
        }));
        var m = r.Meta;
        stdout.WriteLine($"done: {m.TrainTokens:N0} train + {m.ValTokens:N0} val tokens ({m.TokenizerName}, vocabulary {m.VocabSize:N0}, {m.Dtype}) in {outDir} ({clock.Elapsed.TotalSeconds:F1} s)");
        return 0;
    }
}
