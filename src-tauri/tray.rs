//! The tray icon and what its menu does: show or hide the window, and quit.
//!
//! The menu's and the icon's events go through [`on_menu_item`] and [`on_left_click`], which
//! act on a [`TrayTarget`]: the app itself in the running program, a stand-in in the tests, so
//! the tests call the very handlers the tray calls.

use anyhow::Context;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Wry};

/// The show/hide item's id.
pub const TRAY_TOGGLE: &str = "toggle-window";
/// The quit item's id.
pub const TRAY_QUIT: &str = "quit";
const HIDE_LABEL: &str = "Hide Hearth";
const SHOW_LABEL: &str = "Show Hearth";

/// What the tray acts on: the window's visibility, and quitting.
pub trait TrayTarget {
    fn window_visible(&self) -> bool;
    fn show_window(&self);
    fn hide_window(&self);
    /// Ends the event loop; the app then stops the server and exits 0.
    fn quit(&self);
}

/// A tray menu item was chosen.
pub fn on_menu_item(target: &impl TrayTarget, id: &str) {
    match id {
        TRAY_TOGGLE => toggle_window(target),
        TRAY_QUIT => target.quit(),
        _ => tracing::warn!(id, "unknown tray menu item"),
    }
}

/// A left click on the icon (Windows and macOS; Linux trays show the menu instead).
pub fn on_left_click(target: &impl TrayTarget) {
    toggle_window(target);
}

fn toggle_window(target: &impl TrayTarget) {
    if target.window_visible() {
        target.hide_window();
    } else {
        target.show_window();
    }
}

impl TrayTarget for AppHandle {
    fn window_visible(&self) -> bool {
        crate::desktop::window_visible(self)
    }

    fn show_window(&self) {
        crate::desktop::show_window(self);
    }

    fn hide_window(&self) {
        crate::desktop::hide_window(self);
    }

    fn quit(&self) {
        self.exit(0);
    }
}

/// The tray's show/hide item, kept to relabel it when the window is shown or hidden.
struct TrayToggle(MenuItem<Wry>);

/// Adds the tray icon with its menu.
pub fn create_tray(app: &AppHandle) -> anyhow::Result<()> {
    let toggle = MenuItem::with_id(app, TRAY_TOGGLE, HIDE_LABEL, true, None::<&str>)?;
    let quit = MenuItem::with_id(app, TRAY_QUIT, "Quit Hearth", true, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&toggle, &separator, &quit])?;
    app.manage(TrayToggle(toggle));
    let mut tray = TrayIconBuilder::with_id("hearth")
        .tooltip("Hearth")
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| on_menu_item(app, event.id().as_ref()))
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                on_left_click(tray.app_handle());
            }
        });
    if let Some(icon) = app.default_window_icon() {
        tray = tray.icon(icon.clone());
    }
    tray.build(app).context("cannot create the tray icon")?;
    Ok(())
}

/// Names the show/hide item after what it will do next.
pub fn relabel_toggle(app: &AppHandle, window_shown: bool) {
    if let Some(toggle) = app.try_state::<TrayToggle>() {
        let _ = toggle
            .0
            .set_text(if window_shown { HIDE_LABEL } else { SHOW_LABEL });
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    /// A window and an event loop that record what the tray asked of them.
    #[derive(Default)]
    struct FakeApp {
        visible: Cell<bool>,
        calls: RefCell<Vec<&'static str>>,
    }

    impl TrayTarget for FakeApp {
        fn window_visible(&self) -> bool {
            self.visible.get()
        }
        fn show_window(&self) {
            self.visible.set(true);
            self.calls.borrow_mut().push("show");
        }
        fn hide_window(&self) {
            self.visible.set(false);
            self.calls.borrow_mut().push("hide");
        }
        fn quit(&self) {
            self.calls.borrow_mut().push("quit");
        }
    }

    #[test]
    fn the_toggle_item_hides_a_shown_window_and_shows_a_hidden_one() {
        let app = FakeApp::default();
        app.visible.set(true);
        on_menu_item(&app, TRAY_TOGGLE);
        assert!(!app.visible.get());
        on_menu_item(&app, TRAY_TOGGLE);
        assert!(app.visible.get());
        assert_eq!(*app.calls.borrow(), ["hide", "show"]);
    }

    #[test]
    fn the_quit_item_quits_and_nothing_else() {
        let app = FakeApp::default();
        app.visible.set(true);
        on_menu_item(&app, TRAY_QUIT);
        assert_eq!(*app.calls.borrow(), ["quit"]);
        assert!(
            app.visible.get(),
            "quitting leaves the window to the exit path"
        );
    }

    #[test]
    fn a_left_click_toggles_and_an_unknown_item_does_nothing() {
        let app = FakeApp::default();
        on_left_click(&app);
        assert!(app.visible.get());
        on_menu_item(&app, "no-such-item");
        assert_eq!(*app.calls.borrow(), ["show"]);
    }
}
