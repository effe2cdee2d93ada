using System.Globalization;

namespace Monitoring.Stream.Server;

/// <summary>The <c>monitoring-stream</c> command line.</summary>
internal static class Program
{
    private const string Usage = """
        usage: monitoring-stream <command> [options]

        commands:
          demo   run the pipeline on its embedded defaults with a synthetic load, print progress and a
                 summary, and leave Arrow files in the data folder
                   --points N        points to offer in all (default 10000000)
                   --series N        distinct series (default 10000)
                   --producers N     producing threads (default 2)
                   --data-dir PATH   folder of the local Arrow store (default ./data)
                   --late-ppm N      points per million sent 20 s late, beyond the lateness (default 1000)
                   --max-file-mb N   size at which the store starts a new Arrow file (default 64)
                   --remote-write-url URL
                                     also send every window by Prometheus remote write, e.g.
                                     http://127.0.0.1:8428/api/v1/write (VictoriaMetrics)
        """;

    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }

        try
        {
            return args[0] switch
            {
                "demo" => await DemoCommand.RunAsync(DemoOptions.Parse(args.AsSpan(1))).ConfigureAwait(false),
                _ => Fail($"unknown command '{args[0]}'"),
            };
        }
        catch (FormatException e)
        {
            return Fail(e.Message);
        }
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine("monitoring-stream: " + message);
        Console.Error.WriteLine(Usage);
        return 2;
    }
}

/// <summary>Options of the demo command.</summary>
internal sealed record DemoOptions(long Points, int Series, int Producers, string DataDirectory, int LatePerMillion, int MaxFileMegabytes = 64, Uri? RemoteWriteUrl = null)
{
    public static DemoOptions Parse(ReadOnlySpan<string> args)
    {
        var o = new DemoOptions(10_000_000, 10_000, 2, "data", 1000);
        for (int i = 0; i < args.Length; i++)
        {
            string name = args[i];
            if (i + 1 >= args.Length)
            {
                throw new FormatException($"option '{name}' needs a value");
            }

            string value = args[++i];
            o = name switch
            {
                "--points" => o with { Points = Positive(name, value, long.MaxValue) },
                "--series" => o with { Series = (int)Positive(name, value, 1_000_000) },
                "--producers" => o with { Producers = (int)Positive(name, value, 64) },
                "--data-dir" => o with { DataDirectory = value },
                "--late-ppm" => o with { LatePerMillion = (int)Positive(name, value, 1_000_000, allowZero: true) },
                "--max-file-mb" => o with { MaxFileMegabytes = (int)Positive(name, value, 4096) },
                "--remote-write-url" => o with { RemoteWriteUrl = HttpUrl(name, value) },
                _ => throw new FormatException($"unknown option '{name}'"),
            };
        }

        return o;
    }

    private static Uri HttpUrl(string name, string value) =>
        Uri.TryCreate(value, UriKind.Absolute, out Uri? url) && (url.Scheme == Uri.UriSchemeHttp || url.Scheme == Uri.UriSchemeHttps)
            ? url
            : throw new FormatException($"option '{name}' takes an http or https URL, not '{value}'");

    private static long Positive(string name, string value, long max, bool allowZero = false)
    {
        if (!long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n) || n < (allowZero ? 0 : 1) || n > max)
        {
            throw new FormatException($"option '{name}' takes a whole number from {(allowZero ? 0 : 1)} to {max}, not '{value}'");
        }

        return n;
    }
}
