using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Monitoring.Stream.Server.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary><c>monitoring-stream produce</c> from README.md alone: interrupted while its brokers cannot be reached.</summary>
public class ProduceCommandProbeTests
{
    [Theory]
    [InlineData("INT")]
    [InlineData("TERM")]
    public async Task Produce_SignalWhileTheBrokerIsUnreachable_StopsWithinSecondsNonZeroSayingWhatWasLost(string signal)
    {
        // A port nothing listens on: librdkafka retries the connection for ever, so every message stays undelivered.
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();

        await using ServerProcess produce = ServerProcess.Launch(["produce", "--kafka-bootstrap", $"127.0.0.1:{port}", "--points", "2000"]);
        await Poll.UntilAsync(() => Task.FromResult(produce.Output.Contains("produce: ", StringComparison.Ordinal) ? "started" : null), TimeSpan.FromSeconds(60), "the produce command's first line");
        var clock = Stopwatch.StartNew();
        if (signal == "INT")
        {
            produce.Interrupt();
        }
        else
        {
            produce.Terminate();
        }

        // Before: the final flush waited its full 30 s whatever the signal.
        int exit = await produce.WaitForExitAsync(TimeSpan.FromSeconds(15));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"stopped {clock.Elapsed.TotalSeconds:0.0} s after SIG{signal}. Output:\n{produce.Output}");
        Assert.True(exit != 0, $"exit code 0 although nothing was delivered. Output:\n{produce.Output}");
        if (signal == "INT")
        {
            // Ctrl+C ends with the summary; SIGTERM's stop is System.CommandLine's (it ends the process after a short grace).
            Assert.Contains("interrupted", produce.Output, StringComparison.Ordinal);
            Assert.Contains("undelivered at exit", produce.Output, StringComparison.Ordinal);
        }

        Assert.DoesNotContain("   at ", produce.Output, StringComparison.Ordinal);
    }
}
