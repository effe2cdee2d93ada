using System.CommandLine;

namespace Monitoring.Stream.Server;

/// <summary>The <c>monitoring-stream</c> command line.</summary>
internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        RootCommand root = CreateRootCommand();
        ParseResult parsed = root.Parse(args);
        // The commands handle SIGINT/SIGTERM themselves (first signal: graceful stop; second: at once).
        return await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null }).ConfigureAwait(false);
    }

    /// <summary>Every command of the executable.</summary>
    internal static RootCommand CreateRootCommand() => new("monitoring-stream: a streaming metrics engine (windows of count, sum, min, max, mean, variance and quantiles per series)")
    {
        RunCommand.Create(),
        DemoCommand.Create(),
        ProduceCommand.Create(),
        TailCommand.Create(),
        QueryCommand.Create(),
    };
}
