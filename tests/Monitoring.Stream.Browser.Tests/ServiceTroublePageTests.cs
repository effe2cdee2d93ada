using System.Globalization;
using System.Text.Json;
using Microsoft.Playwright;

namespace Monitoring.Stream.Browser.Tests;

/// <summary>The page when the service's sink is stopped, and when the service itself stops and comes back.</summary>
[Collection(BrowserTestGroup.Name)]
public sealed class ServiceTroublePageTests(BrowserFixture browser)
{
    [Fact]
    public async Task StoppedSink_KafkaBrokerDown_ShowsDegraded()
    {
        // The Kafka sink's broker is down (nothing listens on its port): windows pile up in the sink's
        // queue and the engine's health check calls the sink stalled, after 5 s here instead of 30 s.
        int closedPort = ServiceProcess.FreePort();
        await using ServiceProcess service = await ServiceProcess.StartAsync(
            new Dictionary<string, string> { ["MONITORING_STREAM__Health__SinkStalledDegradedAfter"] = "00:00:05" },
            extraArguments: ["--kafka-bootstrap", $"127.0.0.1:{closedPort}"]);
        await using PageSession session = await PageSession.OpenAsync(browser.Browser, service.BaseAddress);
        IPage page = session.Page;

        await page.WaitForSelectorAsync("#health-badge[data-status='Degraded']", new() { State = WaitForSelectorState.Attached });
        ILocator check = page.Locator("#checks tbody tr", new() { HasText = "stalled" });
        await check.WaitForAsync(new() { State = WaitForSelectorState.Attached });
        Assert.Equal("Degraded", await check.Locator("td.state").GetAttributeAsync("data-state"));
        Assert.Contains("kafka:", await check.InnerTextAsync(), StringComparison.Ordinal);
        ILocator kafkaSink = page.Locator("#sinks tbody tr", new() { HasText = "kafka:" });
        Assert.True(int.Parse(await kafkaSink.Locator("td.num").First.GetAttributeAsync("data-value") ?? "0", CultureInfo.InvariantCulture) > 0, "the stopped sink's queue depth is not shown above 0");
        await session.ScreenshotAsync("page-kafka-down-1280x800.png");

        // What the page shows is what the endpoint says.
        using var http = new HttpClient { BaseAddress = service.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        using JsonDocument dashboard = JsonDocument.Parse(await http.GetStringAsync(new Uri("api/v1/dashboard?window=1h", UriKind.Relative)));
        Assert.Equal("Degraded", JsonAnswers.HealthStatus(dashboard.RootElement));
        Assert.Empty(session.Errors);
    }

    [Fact]
    public async Task StoppedSink_RemoteWriteReceiverDown_ShowsDegraded()
    {
        // A remote-write receiver that is down: nothing listens on its port, every attempt is refused.
        int closedPort = ServiceProcess.FreePort();
        await using ServiceProcess service = await ServiceProcess.StartAsync(extraArguments: ["--remote-write-url", $"http://127.0.0.1:{closedPort}/api/v1/write"]);
        await using PageSession session = await PageSession.OpenAsync(browser.Browser, service.BaseAddress);

        await session.Page.WaitForSelectorAsync("#health-badge[data-status='Degraded']", new() { State = WaitForSelectorState.Attached });
        await session.Page.WaitForSelectorAsync("#sinks td.state:not([data-state='Ok'])", new() { State = WaitForSelectorState.Attached });
        await session.ScreenshotAsync("page-remote-write-down-1280x800.png");

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
