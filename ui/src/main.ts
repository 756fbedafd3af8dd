import { mount } from 'svelte';
import App from './App.svelte';
import { adoptUrlToken } from './lib/api';
import './app.css';

// The URL `hearth serve` prints carries the token: keep it for the tab, out of the address bar.
adoptUrlToken();

const target = document.getElementById('app');
if (!target) throw new Error('index.html has no #app element');

export default mount(App, { target });
