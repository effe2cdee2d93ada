using System.Text.Json;
using Microsoft.Playwright;

namespace Monitoring.Stream.Browser.Tests;

/// <summary>The page at / of a running <c>monitoring-stream run --demo-load</c>, in headless Chromium.</summary>
[Collection(BrowserTestGroup.Name)]
public sealed class DashboardPageTests(BrowserFixture browser, ServiceFixture service) : IClassFixture<ServiceFixture>
{
    [Fact]
    public async Task Page_Loads_NoConsoleErrorsEverySectionShownAndScreenshotsAtTwoSizes()
    {
        await using PageSession session = await PageSession.OpenAsync(browser.Browser, service.BaseAddress);
        await session.WaitForConnectionAsync("connected");
        await session.WaitForChartAsync();
        await session.WaitForRefreshesAsync(await session.RefreshesAsync() + 1);
        IPage page = session.Page;

        Assert.Contains(await page.GetAttributeAsync("#health-badge", "data-status"), new[] { "Healthy", "Degraded", "Unhealthy" });
        Assert.NotEqual(0, await page.Locator("#checks tbody tr td.state").CountAsync());
        Assert.NotEqual(0, await page.Locator("#sinks tbody tr td.state").CountAsync());
        Assert.NotEqual(0, await page.Locator("#status-codes tbody tr td.num").CountAsync());
        // Every figure the service reports is written with its unit.
        Assert.Matches("points?$", (await page.InnerTextAsync("[data-field='engine.accepted']")).Trim());
        Assert.NotEqual(string.Empty, await page.GetAttributeAsync("[data-field='engine.accepted']", "data-value"));
        Assert.EndsWith("req/s", (await page.InnerTextAsync("[data-field='requests.ratePerSecond']")).Trim(), StringComparison.Ordinal);
        Assert.Matches("(µs|ms| s)$", (await page.InnerTextAsync("[data-field='requests.latencySeconds.p99']")).Trim());
        Assert.Equal(3, await page.Locator("#explorer .chart canvas").CountAsync());
        // The live charts: a rate needs two refreshes, and the page has had at least two by now.
        Assert.Equal(2, await page.Locator(".chart.live canvas").CountAsync());
        Assert.NotEqual(string.Empty, await page.GetAttributeAsync("#chart-ingest .latest", "data-value"));
        Assert.NotEqual(0, await page.Locator("#metric-list option").CountAsync());

        await session.ScreenshotAsync("page-1280x800.png");
        await session.ScreenshotAsync("page-1280-full.png", fullPage: true);
        await page.SetViewportSizeAsync(400, 800);
        await session.WaitForRefreshesAsync(await session.RefreshesAsync() + 1);
        // Narrow: nothing wider than the window (tables scroll inside their cards).
        Assert.True(await page.EvaluateAsync<bool>("() => document.documentElement.scrollWidth <= window.innerWidth"),
            "the page is wider than a 400 px window");
        await session.ScreenshotAsync("page-400x800.png");
        await session.ScreenshotAsync("page-400-full.png", fullPage: true);

        Assert.Empty(session.Errors);
        // Nothing from anywhere but the service: no CDN, no internet at run time.
        Assert.All(session.Requests, url => Assert.True(url.StartsWith(service.BaseAddress.ToString(), StringComparison.Ordinal) || url.StartsWith("data:", StringComparison.Ordinal), $"the page requested {url}"));
        Assert.Contains(session.Requests, url => url.Contains("/vendor/uPlot.iife.min.js", StringComparison.Ordinal));
    }

    [Fact]
    public async Task HealthBadgeAndChart_EndpointsFetchedAtTheSameMoment_ShowTheSame()
    {
        await using PageSession session = await PageSession.OpenAsync(browser.Browser, service.BaseAddress);
        await session.WaitForChartAsync();
        IPage page = session.Page;
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var mismatches = new List<string>();
        // A window closing between the page's request and the test's changes the figures legitimately:
        // up to three refreshes are compared, and the test fails unless one matches in every figure.
        for (int attempt = 0; attempt < 3; attempt++)
        {
            Task<IResponse> dashboardAnswer = page.WaitForResponseAsync(r => r.Url.Contains("/api/v1/dashboard", StringComparison.Ordinal), new() { Timeout = PageSession.WaitMs });
            Task<IResponse> statisticsAnswer = page.WaitForResponseAsync(r => r.Url.Contains("/api/v1/statistics", StringComparison.Ordinal) && !r.Url.Contains("groupBy", StringComparison.Ordinal), new() { Timeout = PageSession.WaitMs });
            IResponse pageDashboard = await dashboardAnswer;
            using JsonDocument dashboard = JsonDocument.Parse(await http.GetStringAsync(new Uri(pageDashboard.Url)));
            IResponse pageStatistics = await statisticsAnswer;
            using JsonDocument statistics = JsonDocument.Parse(await http.GetStringAsync(new Uri(pageStatistics.Url)));

            // Wait until the page has drawn those very answers.
            using JsonDocument pageSawDashboard = JsonDocument.Parse(await pageDashboard.TextAsync());
            using JsonDocument pageSawStatistics = JsonDocument.Parse(await pageStatistics.TextAsync());
            await page.WaitForSelectorAsync($"#updated[datetime='{pageSawDashboard.RootElement.GetProperty("generatedAt").GetString()}']", new() { State = WaitForSelectorState.Attached });
            await page.WaitForSelectorAsync($"#chart-quantiles[data-as-of='{pageSawStatistics.RootElement.GetProperty("to").GetString()}']", new() { State = WaitForSelectorState.Attached });

            string expectedHealth = JsonAnswers.HealthStatus(dashboard.RootElement);
            string? shownHealth = await page.GetAttributeAsync("#health-badge", "data-status");
            string shownHealthText = (await page.InnerTextAsync("#health-badge")).Trim();
            string[] expectedSinks = JsonAnswers.SinkStates(dashboard.RootElement);
            var shownSinks = new List<string>();
            foreach (ILocator row in await page.Locator("#sinks tbody tr").AllAsync())
            {
                IReadOnlyList<string> cells = await row.Locator("td").AllInnerTextsAsync();
                shownSinks.Add($"{cells[0]}={cells[1]}");
            }

            double? expectedP99 = JsonAnswers.LatestP99(statistics.RootElement);
            double? shownP99 = JsonAnswers.PageNumber(await page.GetAttributeAsync("#chart-quantiles .latest", "data-value"));
            Assert.NotNull(expectedP99);

            if (expectedHealth == shownHealth && expectedHealth == shownHealthText && expectedSinks.SequenceEqual(shownSinks) && expectedP99 == shownP99)
            {
                Assert.Empty(session.Errors);
                return;
            }

            mismatches.Add($"attempt {attempt}: health {shownHealth}/{shownHealthText} vs {expectedHealth}; sinks [{string.Join(", ", shownSinks)}] vs [{string.Join(", ", expectedSinks)}]; p99 {shownP99} vs {expectedP99}");
        }

        Assert.Fail("The page never showed what the endpoints answered:\n" + string.Join("\n", mismatches));
    }

    [Fact]
    public async Task MetricFilterAndSpan_ChosenWithTheKeyboard_ChangeTheChart()
    {
        await using PageSession session = await PageSession.OpenAsync(browser.Browser, service.BaseAddress);
        await session.WaitForChartAsync();
        IPage page = session.Page;
        string? firstMetric = await page.GetAttributeAsync("#chart-quantiles", "data-metric");
        double? firstP99 = JsonAnswers.PageNumber(await page.GetAttributeAsync("#chart-quantiles .latest", "data-value"));
        Assert.Equal("demo_http_request_duration_seconds", firstMetric);

        // Search, then Enter: the first match is chosen and the list has the focus.
        await page.FocusAsync("#metric-search");
        await page.Keyboard.TypeAsync("queue");
        await page.Keyboard.PressAsync("Enter");
        await page.WaitForSelectorAsync("#chart-quantiles[data-metric='demo_queue_depth'] .latest[data-value]:not([data-value=''])", new() { State = WaitForSelectorState.Attached });
        Assert.Equal("metric-list", await page.EvaluateAsync<string>("() => document.activeElement.id"));
        double? queueP99 = JsonAnswers.PageNumber(await page.GetAttributeAsync("#chart-quantiles .latest", "data-value"));
        Assert.NotEqual(firstP99, queueP99);
        Assert.Contains("demo_queue_depth", await page.GetAttributeAsync("#chart-quantiles", "aria-label"), StringComparison.Ordinal);

        // A label filter: the label's values are offered, and Enter in the value box applies the filter.
        await page.FocusAsync("#label-name");
        await page.SelectOptionAsync("#label-name", "queue");
        await page.WaitForSelectorAsync("#label-values option[value='orders']", new() { State = WaitForSelectorState.Attached });
        Task<IResponse> filtered = page.WaitForResponseAsync(r => r.Url.Contains("/api/v1/statistics", StringComparison.Ordinal) && r.Url.Contains("label.queue=orders", StringComparison.Ordinal), new() { Timeout = PageSession.WaitMs });
        await page.FocusAsync("#label-value");
        await page.Keyboard.TypeAsync("orders");
        await page.Keyboard.PressAsync("Enter");
        using (JsonDocument orders = JsonDocument.Parse(await (await filtered).TextAsync()))
        {
            Assert.Equal(1, orders.RootElement.GetProperty("statistics").GetProperty("series").GetInt32());
            await page.WaitForSelectorAsync($"#chart-quantiles[data-as-of='{orders.RootElement.GetProperty("to").GetString()}']", new() { State = WaitForSelectorState.Attached });
            Assert.Equal(JsonAnswers.LatestP99(orders.RootElement), JsonAnswers.PageNumber(await page.GetAttributeAsync("#chart-quantiles .latest", "data-value")));
            Assert.Contains("queue=\"orders\"", await page.InnerTextAsync("#explorer-status"), StringComparison.Ordinal);
        }

        // Another span: the page asks the service for it and redraws.
        Task<IResponse> answer = page.WaitForResponseAsync(r => r.Url.Contains("/api/v1/statistics", StringComparison.Ordinal) && r.Url.Contains("window=5m", StringComparison.Ordinal) && r.Url.Contains("metric=demo_queue_depth", StringComparison.Ordinal), new() { Timeout = PageSession.WaitMs });
        await page.FocusAsync("#span");
        await page.SelectOptionAsync("#span", "5m");
        IResponse fiveMinutes = await answer;
        using JsonDocument json = JsonDocument.Parse(await fiveMinutes.TextAsync());
        await page.WaitForSelectorAsync($"#chart-quantiles[data-span='5m'][data-as-of='{json.RootElement.GetProperty("to").GetString()}']", new() { State = WaitForSelectorState.Attached });
        Assert.Equal(JsonAnswers.LatestP99(json.RootElement), JsonAnswers.PageNumber(await page.GetAttributeAsync("#chart-quantiles .latest", "data-value")));
        Assert.Contains("5 min", await page.InnerTextAsync("#explorer-status"), StringComparison.Ordinal);
        Assert.Empty(session.Errors);
    }
}
