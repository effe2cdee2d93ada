using System.Globalization;
using Microsoft.Playwright;

namespace Monitoring.Stream.Browser.Tests;

/// <summary>A browser tab on the service's page, with the console errors it logged.</summary>
internal sealed class PageSession : IAsyncDisposable
{
    /// <summary>How long a test waits for the page to show something before it fails.</summary>
    public const float WaitMs = 60_000;

    private readonly IBrowserContext _context;
    private readonly List<string> _errors = [];
    private readonly List<string> _requests = [];

    private PageSession(IBrowserContext context, IPage page)
    {
        _context = context;
        Page = page;
        page.Console += (_, message) =>
        {
            if (message.Type == "error")
            {
                lock (_errors)
                {
                    _errors.Add($"console: {message.Text} ({message.Location})");
                }
            }
        };
        page.Request += (_, request) =>
        {
            lock (_errors)
            {
                _requests.Add(request.Url);
            }
        };
        page.PageError += (_, error) =>
        {
            lock (_errors)
            {
                _errors.Add($"uncaught: {error}");
            }
        };
    }

    /// <summary>The tab.</summary>
    public IPage Page { get; }

    /// <summary>Errors the page logged to the console or threw.</summary>
    public IReadOnlyList<string> Errors
    {
        get
        {
            lock (_errors)
            {
                return [.. _errors];
            }
        }
    }

    /// <summary>Every URL the page requested.</summary>
    public IReadOnlyList<string> Requests
    {
        get
        {
            lock (_errors)
            {
                return [.. _requests];
            }
        }
    }

    /// <summary>Opens the page of <paramref name="service"/> in a new context of <paramref name="width"/> x <paramref name="height"/>.</summary>
    public static async Task<PageSession> OpenAsync(IBrowser browser, Uri service, int width = 1280, int height = 800)
    {
        IBrowserContext context = await browser.NewContextAsync(new BrowserNewContextOptions
        {
            ViewportSize = new ViewportSize { Width = width, Height = height },
            Locale = "en-US",
            TimezoneId = "UTC",
        });
        context.SetDefaultTimeout(WaitMs);
        IPage page = await context.NewPageAsync();
        var session = new PageSession(context, page);
        await page.GotoAsync(service.ToString());
        return session;
    }

    /// <summary>The number of refreshes the page has completed (its <c>body[data-refreshes]</c>).</summary>
    public async Task<int> RefreshesAsync()
    {
        string? text = await Page.GetAttributeAsync("body", "data-refreshes");
        return text is null ? 0 : int.Parse(text, CultureInfo.InvariantCulture);
    }

    /// <summary>Waits until the page has completed at least <paramref name="count"/> refreshes.</summary>
    public Task WaitForRefreshesAsync(int count) =>
        Page.WaitForFunctionAsync($"() => Number(document.body.dataset.refreshes || 0) >= {count}", null, new PageWaitForFunctionOptions { Timeout = WaitMs });

    /// <summary>Waits until the connection indicator says <paramref name="state"/> (connected or disconnected).</summary>
    public Task WaitForConnectionAsync(string state) =>
        Page.WaitForSelectorAsync($"#connection[data-state='{state}']", new PageWaitForSelectorOptions { Timeout = WaitMs, State = WaitForSelectorState.Attached });

    /// <summary>Waits until the quantile chart shows a latest value, i.e. the chosen metric has statistics.</summary>
    public Task WaitForChartAsync() =>
        Page.WaitForSelectorAsync("#chart-quantiles .latest[data-value]:not([data-value=''])", new PageWaitForSelectorOptions { Timeout = WaitMs, State = WaitForSelectorState.Attached });

    /// <summary>Saves a screenshot of the viewport under artifacts/browser.</summary>
    public async Task<string> ScreenshotAsync(string name, bool fullPage = false)
    {
        string path = Path.Combine(RepositoryPaths.Screenshots, name);
        await Page.ScreenshotAsync(new PageScreenshotOptions { Path = path, FullPage = fullPage });
        return path;
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync() => await _context.CloseAsync();
}
