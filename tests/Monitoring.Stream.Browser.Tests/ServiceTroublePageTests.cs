using System.Text.Json;
using Microsoft.Playwright;

namespace Monitoring.Stream.Browser.Tests;

/// <summary>The page when the service's sink is stopped, and when the service itself stops and comes back.</summary>
[Collection(BrowserTestGroup.Name)]
public sealed class ServiceTroublePageTests(BrowserFixture browser)
{
    [Fact(Skip = "The service does not report it yet: with its remote-write receiver down, run stays Healthy in /health and /api/v1/dashboard (the remote-write sink's own Retrying state is only in /metrics). Enable when a health check covers it.")]
    public async Task StoppedSink_RemoteWriteReceiverDown_ShowsDegraded()
    {
        // A remote-write receiver that is down: nothing listens on its port, every attempt is refused.
        int closedPort = ServiceProcess.FreePort();
        await using ServiceProcess service = await ServiceProcess.StartAsync(extraArguments: ["--remote-write-url", $"http://127.0.0.1:{closedPort}/api/v1/write"]);
        await using PageSession session = await PageSession.OpenAsync(browser.Browser, service.BaseAddress);

        await session.Page.WaitForSelectorAsync("#health-badge[data-status='Degraded']", new() { State = WaitForSelectorState.Attached });
        await session.Page.WaitForSelectorAsync("#sinks td.state:not([data-state='Ok'])", new() { State = WaitForSelectorState.Attached });
        await session.ScreenshotAsync("page-stopped-sink-1280x800.png");

        // What the page shows is what the endpoint says.
        using var http = new HttpClient { BaseAddress = service.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        using JsonDocument dashboard = JsonDocument.Parse(await http.GetStringAsync(new Uri("api/v1/dashboard?window=1h", UriKind.Relative)));
        Assert.Equal("Degraded", JsonAnswers.HealthStatus(dashboard.RootElement));
        Assert.Contains(JsonAnswers.SinkStates(dashboard.RootElement), s => !s.EndsWith("=Ok", StringComparison.Ordinal));
        Assert.Empty(session.Errors);
    }

    [Fact]
    public async Task ServiceRestart_PageShowsDisconnectedThenResumes()
    {
        int port = ServiceProcess.FreePort();
        DirectoryInfo data = Directory.CreateTempSubdirectory("ms-browser-restart-");
        try
        {
            PageSession session;
            await using (ServiceProcess first = await ServiceProcess.StartAsync(port, data.FullName))
            {
                session = await PageSession.OpenAsync(browser.Browser, first.BaseAddress);
                await session.WaitForConnectionAsync("connected");
                await first.StopAsync();
                await session.WaitForConnectionAsync("disconnected");
                Assert.Contains("disconnected", await session.Page.InnerTextAsync("#connection"), StringComparison.Ordinal);
            }

            await using (session)
            {
                await using ServiceProcess second = await ServiceProcess.StartAsync(port, data.FullName);
                await session.WaitForConnectionAsync("connected");
                int refreshes = await session.RefreshesAsync();
                await session.WaitForRefreshesAsync(refreshes + 1);
                Assert.Equal("connected", await session.Page.GetAttributeAsync("#connection", "data-state"));
                Assert.NotEqual("Unknown", await session.Page.GetAttributeAsync("#health-badge", "data-status"));
            }
        }
        finally
        {
            data.Delete(recursive: true);
        }
    }
}
